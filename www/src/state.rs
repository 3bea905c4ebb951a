//! The dashboard's one state: an [`AppState`] changed only by [`Action`]s.
//!
//! The reducer is pure (no clock, no DOM, no I/O) so it runs in host unit tests: the time comes
//! in with the actions that need it, and what must happen on the wire is queued as [`Effect`]s in
//! an outbox that the MQTT hook ([`crate::hooks::use_mqtt`]) drains onto the live session.
//! Device semantics (pending commands, time-outs, offline refusal, optimistic switches, meta)
//! are the [`Registry`]'s; this module only routes messages to it and turns its answers into
//! effects and notices. Schedules (run by the gateway, stored as retained messages) are kept
//! here as received, next to the registry; [`crate::schedule`] reads and writes them.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use switchboard_devices::{
    Change, CommandError, DeviceId, OutgoingMessage, Registry, RelayState, SUBSCRIPTIONS,
};
use yew::Reducible;

use crate::route::Route;
use crate::schedule::{self, Received, Schedule, Update};

/// Most topics kept for the raw topic view.
pub const MAX_TOPICS: usize = 2_000;
/// Longest payload preview kept per topic, in characters.
pub const MAX_PREVIEW_CHARS: usize = 300;
/// Most notices shown at once (older ones are dropped).
const MAX_NOTICES: usize = 4;
/// Most schedules kept (new ones beyond it are ignored, as topics beyond [`MAX_TOPICS`] are).
pub const MAX_SCHEDULES: usize = 1_000;

/// The state of the broker connection, as the banner shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Conn {
    /// Opening the WebSocket or waiting for CONNACK.
    #[default]
    Connecting,
    /// Connected and subscribed.
    Live,
    /// Lost; the next attempt starts at `retry_at_ms`.
    Reconnecting {
        /// When the next attempt starts (`Date.now()` clock).
        retry_at_ms: u64,
        /// What went wrong.
        reason: String,
    },
    /// The broker wants (other) credentials: the login screen is shown, nothing retries.
    AuthRequired {
        /// The broker's refusal, `None` before any attempt with credentials.
        error: Option<String>,
    },
}

/// Light, dark, or whatever the system prefers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Theme {
    /// Follow `prefers-color-scheme`.
    #[default]
    System,
    /// Always light.
    Light,
    /// Always dark.
    Dark,
}

impl Theme {
    /// The value stored in `localStorage` and set as `data-theme` on `<html>`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }

    /// Reads [`Theme::as_str`]'s output; anything else is [`Theme::System`].
    #[must_use]
    pub fn parse(s: &str) -> Self {
        match s {
            "light" => Self::Light,
            "dark" => Self::Dark,
            _ => Self::System,
        }
    }

    /// The theme the toggle switches to, given whether the page currently looks dark.
    #[must_use]
    pub fn toggled(self, looks_dark: bool) -> Self {
        if looks_dark { Self::Light } else { Self::Dark }
    }
}

/// User name and password for the broker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Keep them in `localStorage` for the next visit.
    pub remember: bool,
}

/// The last message seen on one topic, for the raw topic view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicEntry {
    /// The payload as text (lossy UTF-8), cut to [`MAX_PREVIEW_CHARS`].
    pub preview: String,
    /// Payload length in bytes.
    pub len: usize,
    /// The retain flag of the last message.
    pub retained: bool,
    /// Messages seen on this topic.
    pub count: u64,
    /// When the last message arrived.
    pub at_ms: u64,
}

/// How a notice looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// Something did not work (a toggle timed out, a device is offline).
    Error,
    /// Plain information.
    Info,
}

/// A short message shown as a toast until dismissed (or its own timer dismisses it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Identifies it for [`Action::DismissNotice`].
    pub id: u64,
    /// How it looks.
    pub kind: NoticeKind,
    /// The text.
    pub text: String,
}

/// Something the MQTT hook must do on the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Subscribe to these filters.
    Subscribe(Vec<String>),
    /// Publish this message.
    Publish(OutgoingMessage),
}

/// Everything that can happen to the dashboard.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A connection attempt started.
    Connecting,
    /// CONNACK accepted.
    Connected,
    /// The connection dropped; the next attempt starts at `retry_at_ms`.
    Disconnected {
        /// When the next attempt starts.
        retry_at_ms: u64,
        /// What went wrong.
        reason: String,
    },
    /// The broker refused the credentials.
    AuthFailed(String),
    /// A PUBLISH arrived.
    Message {
        /// Topic name.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
        /// Retain flag.
        retain: bool,
        /// Arrival time.
        now_ms: u64,
    },
    /// The user tapped a relay's switch: ask for the opposite of what it shows.
    Toggle {
        /// The device.
        id: DeviceId,
        /// 0-based relay.
        relay: u8,
        /// When.
        now_ms: u64,
    },
    /// Switch off everything in a room (`None`: in the unassigned group... see [`AppState`]).
    AllOff {
        /// The room, `None` for devices without a room.
        room: Option<String>,
        /// When.
        now_ms: u64,
    },
    /// Time passed: unconfirmed commands may time out.
    Tick {
        /// Now.
        now_ms: u64,
    },
    /// Rename a device and/or move it to a room (empty clears the user's value).
    SetMeta {
        /// The device.
        id: DeviceId,
        /// New name.
        name: String,
        /// New room.
        room: String,
    },
    /// Show another view.
    Navigate(Route),
    /// The search box changed.
    Search(String),
    /// The user signed in (or out, with `None`).
    SetCredentials(Option<Credentials>),
    /// The broker URL changed (empty: back to the default).
    SetBrokerUrl(String),
    /// The theme changed.
    SetTheme(Theme),
    /// Close a notice.
    DismissNotice(u64),
    /// The MQTT hook ran the effects numbered below `upto`.
    EffectsDone {
        /// One past the last effect run.
        upto: u64,
    },
    /// `navigator.onLine` changed.
    NetworkOnline(bool),
    /// Store a new or changed schedule (a retained message; it shows when the broker echoes
    /// it).
    SaveSchedule(Schedule),
    /// Enable or disable a stored schedule.
    SetScheduleEnabled {
        /// The schedule.
        id: String,
        /// Whether it should fire.
        enabled: bool,
    },
    /// Delete a schedule (an empty retained message).
    DeleteSchedule(String),
    /// The broker did not take a publish (refused, or it expired unsent).
    PublishFailed {
        /// The message's topic.
        topic: String,
        /// Why.
        reason: String,
    },
}

/// The dashboard's state. See the module docs.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Every device, fed with every message.
    pub registry: Registry,
    /// The broker connection.
    pub conn: Conn,
    /// Whether the browser thinks it has a network.
    pub network_online: bool,
    /// The broker URL used when the user set none: same origin `/mqtt`.
    pub default_url: String,
    /// The broker URL the user set, if any.
    pub custom_url: Option<String>,
    /// Credentials for the broker, if any.
    pub credentials: Option<Credentials>,
    /// Bumped whenever a new session must be opened (credentials or URL changed).
    pub session_gen: u64,
    /// The theme.
    pub theme: Theme,
    /// The view shown.
    pub route: Route,
    /// The search box.
    pub search: String,
    /// Last message per topic.
    pub topics: BTreeMap<String, TopicEntry>,
    /// Schedules by id, as the broker last said (unusable ones flagged with the reason).
    pub schedules: BTreeMap<String, Received>,
    /// The time zone the gateway runs schedules in, once it said.
    pub time_zone: Option<String>,
    /// Toasts.
    pub notices: Vec<Notice>,
    next_notice: u64,
    /// Effects not yet run; `outbox[i]` is effect number `outbox_base + i`.
    outbox: Vec<Effect>,
    outbox_base: u64,
    /// Filters subscribed in the current session.
    subscribed: BTreeSet<String>,
}

impl PartialEq for AppState {
    /// The registry has no `PartialEq`; states are compared by what the views read of it.
    fn eq(&self, other: &Self) -> bool {
        self.conn == other.conn
            && self.route == other.route
            && self.search == other.search
            && self.notices == other.notices
            && self.outbox_end() == other.outbox_end()
            && self.registry.len() == other.registry.len()
            && self
                .registry
                .devices()
                .zip(other.registry.devices())
                .all(|(a, b)| a == b)
            && self.topics == other.topics
            && self.schedules == other.schedules
            && self.theme == other.theme
            && self.custom_url == other.custom_url
            && self.credentials == other.credentials
            && self.session_gen == other.session_gen
            && self.network_online == other.network_online
    }
}

impl AppState {
    /// A fresh state that connects to `default_url` (or `custom_url`) with `credentials`.
    #[must_use]
    pub fn new(
        default_url: String,
        custom_url: Option<String>,
        credentials: Option<Credentials>,
        theme: Theme,
        route: Route,
    ) -> Self {
        Self {
            registry: Registry::new(),
            conn: Conn::Connecting,
            network_online: true,
            default_url,
            custom_url,
            credentials,
            session_gen: 0,
            theme,
            route,
            search: String::new(),
            topics: BTreeMap::new(),
            schedules: BTreeMap::new(),
            time_zone: None,
            notices: Vec::new(),
            next_notice: 1,
            outbox: Vec::new(),
            outbox_base: 0,
            subscribed: BTreeSet::new(),
        }
    }

    /// The broker URL to connect to.
    #[must_use]
    pub fn broker_url(&self) -> &str {
        self.custom_url.as_deref().unwrap_or(&self.default_url)
    }

    /// Whether commands can be sent now.
    #[must_use]
    pub fn is_live(&self) -> bool {
        self.conn == Conn::Live
    }

    /// Effects not yet run, with their numbers.
    pub fn pending_effects(&self) -> impl Iterator<Item = (u64, &Effect)> + '_ {
        (self.outbox_base..).zip(self.outbox.iter())
    }

    /// One past the number of the newest effect: changes whenever an effect is queued.
    #[must_use]
    pub fn outbox_end(&self) -> u64 {
        self.outbox_base + self.outbox.len() as u64
    }

    /// The filters subscribed in this session.
    #[must_use]
    pub fn subscribed(&self) -> &BTreeSet<String> {
        &self.subscribed
    }

    fn push_effect(&mut self, effect: Effect) {
        self.outbox.push(effect);
    }

    fn notice(&mut self, kind: NoticeKind, text: String) {
        let id = self.next_notice;
        self.next_notice += 1;
        self.notices.push(Notice { id, kind, text });
        if self.notices.len() > MAX_NOTICES {
            self.notices.remove(0);
        }
    }

    fn device_name(&self, id: &DeviceId) -> String {
        self.registry
            .get(id)
            .map_or_else(|| id.to_string(), |d| d.name.clone())
    }

    /// Subscribes to whatever the registry needs that this session lacks.
    fn subscribe_missing(&mut self) {
        let wanted = SUBSCRIPTIONS
            .iter()
            .map(|s| (*s).to_owned())
            .chain([
                schedule::FILTER.to_owned(),
                schedule::TIME_ZONE_TOPIC.to_owned(),
            ])
            .chain(self.registry.dynamic_subscriptions());
        let missing: Vec<String> = wanted.filter(|f| !self.subscribed.contains(f)).collect();
        if !missing.is_empty() {
            self.subscribed.extend(missing.iter().cloned());
            self.push_effect(Effect::Subscribe(missing));
        }
    }

    fn record_topic(&mut self, topic: &str, payload: &[u8], retain: bool, now_ms: u64) {
        if payload.is_empty() && retain {
            // An empty retained message deletes the retained message of the topic.
            self.topics.remove(topic);
            return;
        }
        if self.topics.len() >= MAX_TOPICS && !self.topics.contains_key(topic) {
            return;
        }
        let text = String::from_utf8_lossy(payload);
        let preview: String = text.chars().take(MAX_PREVIEW_CHARS).collect();
        let entry = self
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| TopicEntry {
                preview: String::new(),
                len: 0,
                retained: false,
                count: 0,
                at_ms: now_ms,
            });
        entry.preview = preview;
        entry.len = payload.len();
        entry.retained = retain;
        entry.count += 1;
        entry.at_ms = now_ms;
    }

    fn record_schedule(&mut self, topic: &str, payload: &[u8]) {
        if topic == schedule::TIME_ZONE_TOPIC {
            self.time_zone = std::str::from_utf8(payload)
                .ok()
                .map(str::trim)
                .filter(|z| !z.is_empty() && z.len() <= 64)
                .map(str::to_owned);
            return;
        }
        match schedule::parse(topic, payload) {
            Some(Update::Deleted(id)) => {
                self.schedules.remove(&id);
            }
            Some(Update::Stored(r))
                if self.schedules.len() < MAX_SCHEDULES || self.schedules.contains_key(&r.id) =>
            {
                self.schedules.insert(r.id.clone(), r);
            }
            Some(Update::Stored(_)) | None => {}
        }
    }

    /// Publishes a schedule message if live and valid, else says why not.
    fn publish_schedule(&mut self, message: Result<OutgoingMessage, schedule::Invalid>) {
        if !self.is_live() {
            self.notice(
                NoticeKind::Error,
                "Not connected to the broker: the schedule was not saved".to_owned(),
            );
            return;
        }
        match message {
            Ok(m) => self.push_effect(Effect::Publish(m)),
            Err(e) => self.notice(
                NoticeKind::Error,
                format!("The schedule was not saved: {}", e.message()),
            ),
        }
    }

    fn apply_changes(&mut self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::SubscriptionsChanged if self.is_live() => self.subscribe_missing(),
                Change::CommandTimedOut { id, relay } => {
                    let name = self.device_name(&id);
                    let state = self
                        .registry
                        .get(&id)
                        .and_then(|d| d.relay(relay))
                        .map_or(RelayState::Unknown, |r| r.state);
                    let shown = match state {
                        RelayState::On => "still on",
                        RelayState::Off => "still off",
                        RelayState::Unknown => "state unknown",
                    };
                    self.notice(
                        NoticeKind::Error,
                        format!("{name} did not respond ({shown})"),
                    );
                }
                Change::Removed(id) if self.route == Route::Device(id.clone()) => {
                    self.route = Route::Home;
                }
                _ => {}
            }
        }
    }

    fn command(&mut self, id: &DeviceId, relay: u8, on: bool, now_ms: u64) {
        if !self.is_live() {
            self.notice(
                NoticeKind::Error,
                "Not connected to the broker: try again when live".to_owned(),
            );
            return;
        }
        match self.registry.command(id, relay, on, now_ms) {
            Ok(messages) => {
                for m in messages {
                    self.push_effect(Effect::Publish(m));
                }
            }
            Err(e) => {
                let text = match e {
                    CommandError::Offline(_) => format!("{} is offline", self.device_name(id)),
                    other => other.to_string(),
                };
                self.notice(NoticeKind::Error, text);
            }
        }
    }
}

/// What a relay's switch wants next when tapped: the opposite of what it shows (the pending
/// target while a command is pending, else the confirmed state; unknown counts as off).
#[must_use]
pub fn toggle_target(registry: &Registry, id: &DeviceId, relay: u8) -> Option<bool> {
    let r = registry.get(id)?.relay(relay)?;
    let shown_on = match r.pending {
        Some(p) => p.want,
        None => r.state == RelayState::On,
    };
    Some(!shown_on)
}

impl Reducible for AppState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = Rc::unwrap_or_clone(self);
        match action {
            Action::Connecting => {
                if !matches!(s.conn, Conn::AuthRequired { .. }) {
                    s.conn = Conn::Connecting;
                }
            }
            Action::Connected => {
                s.conn = Conn::Live;
                // Clean session: every subscription is made again.
                s.subscribed.clear();
                s.subscribe_missing();
            }
            Action::Disconnected {
                retry_at_ms,
                reason,
            } => {
                s.subscribed.clear();
                s.conn = Conn::Reconnecting {
                    retry_at_ms,
                    reason,
                };
            }
            Action::AuthFailed(reason) => {
                s.subscribed.clear();
                let error = if s.credentials.is_some() {
                    Some(reason)
                } else {
                    None
                };
                s.conn = Conn::AuthRequired { error };
            }
            Action::Message {
                topic,
                payload,
                retain,
                now_ms,
            } => {
                s.record_topic(&topic, &payload, retain, now_ms);
                s.record_schedule(&topic, &payload);
                let changes = s.registry.handle_message(&topic, &payload, retain, now_ms);
                s.apply_changes(changes);
            }
            Action::Toggle { id, relay, now_ms } => {
                if let Some(on) = toggle_target(&s.registry, &id, relay) {
                    s.command(&id, relay, on, now_ms);
                }
            }
            Action::AllOff { room, now_ms } => {
                if s.is_live() {
                    let messages = match &room {
                        Some(r) => s.registry.all_off(Some(r), now_ms),
                        // The registry's `None` means every device; the unassigned group is
                        // switched device by device.
                        None => {
                            let targets: Vec<(DeviceId, u8)> = s
                                .registry
                                .devices()
                                .filter(|d| d.room.is_none())
                                .flat_map(|d| d.relays.iter().map(|r| (d.id.clone(), r.index)))
                                .collect();
                            let mut out = Vec::new();
                            for (id, relay) in targets {
                                let needed = s
                                    .registry
                                    .get(&id)
                                    .and_then(|d| d.relay(relay))
                                    .is_some_and(|r| {
                                        r.state != RelayState::Off
                                            || r.pending.is_some_and(|p| p.want)
                                    });
                                if needed {
                                    out.extend(
                                        s.registry
                                            .command(&id, relay, false, now_ms)
                                            .unwrap_or_default(),
                                    );
                                }
                            }
                            out
                        }
                    };
                    for m in messages {
                        s.push_effect(Effect::Publish(m));
                    }
                } else {
                    s.notice(
                        NoticeKind::Error,
                        "Not connected to the broker: try again when live".to_owned(),
                    );
                }
            }
            Action::Tick { now_ms } => {
                let changes = s.registry.tick(now_ms);
                s.apply_changes(changes);
            }
            Action::SetMeta { id, name, room } => {
                if s.is_live() {
                    let m = s.registry.set_meta(&id, Some(&name), Some(&room));
                    s.push_effect(Effect::Publish(m));
                } else {
                    s.notice(
                        NoticeKind::Error,
                        "Not connected to the broker: the change was not saved".to_owned(),
                    );
                }
            }
            Action::Navigate(route) => s.route = route,
            Action::Search(q) => s.search = q,
            Action::SetCredentials(credentials) => {
                s.credentials = credentials;
                s.session_gen += 1;
                s.conn = Conn::Connecting;
            }
            Action::SetBrokerUrl(url) => {
                let url = url.trim();
                let custom = (!url.is_empty() && url != s.default_url).then(|| url.to_owned());
                if custom != s.custom_url {
                    s.custom_url = custom;
                    s.session_gen += 1;
                    s.conn = Conn::Connecting;
                }
            }
            Action::SetTheme(theme) => s.theme = theme,
            Action::DismissNotice(id) => s.notices.retain(|n| n.id != id),
            Action::EffectsDone { upto } => {
                let done = usize::try_from(upto.saturating_sub(s.outbox_base))
                    .unwrap_or(usize::MAX)
                    .min(s.outbox.len());
                s.outbox.drain(..done);
                s.outbox_base += done as u64;
            }
            Action::NetworkOnline(online) => s.network_online = online,
            Action::SaveSchedule(schedule) => s.publish_schedule(schedule.to_message()),
            Action::SetScheduleEnabled { id, enabled } => {
                let current = s.schedules.get(&id).and_then(|r| r.schedule.clone().ok());
                if let Some(current) = current {
                    s.publish_schedule(Schedule { enabled, ..current }.to_message());
                }
            }
            Action::DeleteSchedule(id) => {
                // Also for ids the gateway refuses: the retained message is removed all the same.
                s.publish_schedule(Ok(schedule::delete_message(&id)));
            }
            Action::PublishFailed { topic, reason } => {
                // A command that does not arrive already shows as its time-out.
                let what = if topic.starts_with(schedule::TOPIC_PREFIX) {
                    Some("The schedule was not saved")
                } else if topic.starts_with(switchboard_devices::meta::META_PREFIX) {
                    Some("The name and room were not saved")
                } else {
                    None
                };
                if let Some(what) = what {
                    s.notice(NoticeKind::Error, format!("{what}: {reason}"));
                }
            }
        }
        Rc::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_devices::Availability;

    fn state() -> Rc<AppState> {
        Rc::new(AppState::new(
            "ws://h/mqtt".to_owned(),
            None,
            None,
            Theme::System,
            Route::Home,
        ))
    }

    fn msg(topic: &str, payload: &str, retain: bool, now_ms: u64) -> Action {
        Action::Message {
            topic: topic.to_owned(),
            payload: payload.as_bytes().to_vec(),
            retain,
            now_ms,
        }
    }

    fn run(s: Rc<AppState>, actions: impl IntoIterator<Item = Action>) -> Rc<AppState> {
        actions.into_iter().fold(s, |s, a| s.reduce(a))
    }

    fn publishes(s: &AppState) -> Vec<(String, String, bool)> {
        s.pending_effects()
            .filter_map(|(_, e)| match e {
                Effect::Publish(m) => {
                    Some((m.topic.clone(), m.payload_str().into_owned(), m.retain))
                }
                Effect::Subscribe(_) => None,
            })
            .collect()
    }

    fn kitchen() -> DeviceId {
        DeviceId::from("tasmota:kitchen")
    }

    /// A live state knowing an online Tasmota plug `kitchen`, off, with no effects queued.
    fn live_with_kettle() -> Rc<AppState> {
        let s = run(
            state(),
            [
                Action::Connected,
                msg("tele/kitchen/LWT", "Online", true, 0),
                msg("stat/kitchen/POWER", "OFF", true, 0),
            ],
        );
        let upto = s.outbox_end();
        s.reduce(Action::EffectsDone { upto })
    }

    #[test]
    fn connect_subscribes_to_everything_once() {
        let s = state().reduce(Action::Connected);
        assert_eq!(s.conn, Conn::Live);
        let subs: Vec<_> = s.pending_effects().collect();
        assert_eq!(subs.len(), 1);
        let Effect::Subscribe(filters) = subs[0].1 else {
            panic!("expected a subscribe");
        };
        assert_eq!(filters.len(), SUBSCRIPTIONS.len() + 2);
        assert!(filters.iter().any(|f| f == schedule::FILTER));
        assert!(filters.iter().any(|f| f == schedule::TIME_ZONE_TOPIC));
        // A second CONNACK in the same session state does not duplicate filters it has... but a
        // reconnect (clean session) subscribes again.
        let upto = s.outbox_end();
        let s = run(
            s,
            [
                Action::EffectsDone { upto },
                Action::Disconnected {
                    retry_at_ms: 1_000,
                    reason: "closed".into(),
                },
            ],
        );
        assert!(matches!(
            s.conn,
            Conn::Reconnecting {
                retry_at_ms: 1_000,
                ..
            }
        ));
        assert_eq!(s.pending_effects().count(), 0);
        let s = s.reduce(Action::Connected);
        assert_eq!(s.pending_effects().count(), 1);
    }

    #[test]
    fn the_gateway_says_its_time_zone() {
        let s = state().reduce(Action::Connected);
        assert_eq!(s.time_zone, None);
        let s = s.reduce(msg(schedule::TIME_ZONE_TOPIC, "Europe/Berlin", true, 0));
        assert_eq!(s.time_zone.as_deref(), Some("Europe/Berlin"));
        assert!(s.schedules.is_empty(), "not a schedule");
        let s = s.reduce(msg(schedule::TIME_ZONE_TOPIC, "", true, 1));
        assert_eq!(s.time_zone, None);
    }

    #[test]
    fn retained_state_paints_devices() {
        let s = live_with_kettle();
        let d = s.registry.get(&kitchen()).expect("discovered");
        assert_eq!(d.online, Availability::Online);
        assert_eq!(d.relays[0].state, RelayState::Off);
        assert_eq!(s.topics["stat/kitchen/POWER"].preview, "OFF");
        assert!(s.topics["stat/kitchen/POWER"].retained);
    }

    #[test]
    fn toggle_publishes_pending_until_confirmed() {
        let s = live_with_kettle().reduce(Action::Toggle {
            id: kitchen(),
            relay: 0,
            now_ms: 1_000,
        });
        assert_eq!(
            publishes(&s),
            vec![("cmnd/kitchen/POWER".into(), "ON".into(), false)]
        );
        let r = &s.registry.get(&kitchen()).unwrap().relays[0];
        assert_eq!(r.state, RelayState::Off);
        assert!(r.pending.is_some_and(|p| p.want));
        // Tapping again while pending asks for the opposite of the pending target.
        assert_eq!(toggle_target(&s.registry, &kitchen(), 0), Some(false));
        let s = s.reduce(msg("stat/kitchen/POWER", "ON", false, 1_300));
        let r = &s.registry.get(&kitchen()).unwrap().relays[0];
        assert_eq!(r.state, RelayState::On);
        assert!(r.pending.is_none());
        assert!(s.notices.is_empty());
    }

    #[test]
    fn unconfirmed_toggle_reverts_with_a_notice() {
        let s = run(
            live_with_kettle(),
            [
                Action::Toggle {
                    id: kitchen(),
                    relay: 0,
                    now_ms: 1_000,
                },
                Action::Tick { now_ms: 3_000 },
            ],
        );
        assert!(s.notices.is_empty(), "not yet timed out");
        let s = s.reduce(Action::Tick { now_ms: 6_000 });
        let r = &s.registry.get(&kitchen()).unwrap().relays[0];
        assert!(r.pending.is_none());
        assert_eq!(r.state, RelayState::Off);
        assert_eq!(s.notices.len(), 1);
        assert_eq!(s.notices[0].kind, NoticeKind::Error);
        assert!(
            s.notices[0]
                .text
                .contains("kitchen did not respond (still off)")
        );
        let id = s.notices[0].id;
        assert!(s.reduce(Action::DismissNotice(id)).notices.is_empty());
    }

    #[test]
    fn offline_devices_refuse_toggles() {
        let s = run(
            live_with_kettle(),
            [
                msg("tele/kitchen/LWT", "Offline", true, 10),
                Action::Toggle {
                    id: kitchen(),
                    relay: 0,
                    now_ms: 20,
                },
            ],
        );
        assert!(publishes(&s).is_empty());
        assert_eq!(s.notices.len(), 1);
        assert_eq!(s.notices[0].text, "kitchen is offline");
    }

    #[test]
    fn nothing_is_sent_while_not_live() {
        let s = run(
            live_with_kettle(),
            [
                Action::Disconnected {
                    retry_at_ms: 5,
                    reason: "gone".into(),
                },
                Action::Toggle {
                    id: kitchen(),
                    relay: 0,
                    now_ms: 1,
                },
                Action::AllOff {
                    room: None,
                    now_ms: 1,
                },
            ],
        );
        assert!(publishes(&s).is_empty());
        assert_eq!(s.notices.len(), 2);
        assert!(
            s.registry.get(&kitchen()).unwrap().relays[0]
                .pending
                .is_none()
        );
    }

    #[test]
    fn all_off_per_room() {
        let s = run(
            live_with_kettle(),
            [
                msg("stat/kitchen/POWER", "ON", false, 1),
                msg("tele/desk/LWT", "Online", true, 1),
                msg("stat/desk/POWER", "ON", true, 1),
                msg(
                    "switchboard/meta/tasmota:kitchen",
                    r#"{"room":"Kitchen"}"#,
                    true,
                    1,
                ),
            ],
        );
        let upto = s.outbox_end();
        let s = s.reduce(Action::EffectsDone { upto });
        let kitchen_off = s.clone().reduce(Action::AllOff {
            room: Some("Kitchen".into()),
            now_ms: 2,
        });
        assert_eq!(
            publishes(&kitchen_off),
            vec![("cmnd/kitchen/POWER".into(), "OFF".into(), false)]
        );
        let unassigned_off = s.reduce(Action::AllOff {
            room: None,
            now_ms: 2,
        });
        assert_eq!(
            publishes(&unassigned_off),
            vec![("cmnd/desk/POWER".into(), "OFF".into(), false)]
        );
    }

    #[test]
    fn set_meta_publishes_retained_and_applies_on_echo() {
        let s = live_with_kettle().reduce(Action::SetMeta {
            id: kitchen(),
            name: " Kettle ".into(),
            room: "Kitchen".into(),
        });
        let p = publishes(&s);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "switchboard/meta/tasmota:kitchen");
        assert!(p[0].2, "meta is retained");
        // Applied when the broker echoes it.
        let s = s.reduce(msg(&p[0].0, &p[0].1, false, 5));
        let d = s.registry.get(&kitchen()).unwrap();
        assert_eq!(d.name, "Kettle");
        assert_eq!(d.room.as_deref(), Some("Kitchen"));
    }

    #[test]
    fn effects_drain_by_number() {
        let s = live_with_kettle();
        let base = s.outbox_end();
        let s = run(
            s,
            [
                Action::Toggle {
                    id: kitchen(),
                    relay: 0,
                    now_ms: 1,
                },
                Action::Toggle {
                    id: kitchen(),
                    relay: 0,
                    now_ms: 2,
                },
            ],
        );
        assert_eq!(s.outbox_end(), base + 2);
        let s = s.reduce(Action::EffectsDone { upto: base + 1 });
        let left: Vec<u64> = s.pending_effects().map(|(n, _)| n).collect();
        assert_eq!(left, vec![base + 1]);
        // Stale or excessive numbers are harmless.
        let s = run(
            s,
            [
                Action::EffectsDone { upto: 0 },
                Action::EffectsDone { upto: u64::MAX },
            ],
        );
        assert_eq!(s.pending_effects().count(), 0);
        assert_eq!(s.outbox_end(), base + 2);
    }

    #[test]
    fn auth_failure_waits_for_credentials() {
        let s = state().reduce(Action::AuthFailed("not authorized".into()));
        assert_eq!(s.conn, Conn::AuthRequired { error: None });
        // A new attempt does not hide the login screen...
        let s = s.reduce(Action::Connecting);
        assert!(matches!(s.conn, Conn::AuthRequired { .. }));
        // ...credentials do, and open a new session.
        let gen0 = s.session_gen;
        let s = s.reduce(Action::SetCredentials(Some(Credentials {
            username: "u".into(),
            password: "p".into(),
            remember: false,
        })));
        assert_eq!(s.conn, Conn::Connecting);
        assert_eq!(s.session_gen, gen0 + 1);
        let s = s.reduce(Action::AuthFailed("bad user name or password".into()));
        assert_eq!(
            s.conn,
            Conn::AuthRequired {
                error: Some("bad user name or password".into())
            }
        );
    }

    #[test]
    fn broker_url_setting() {
        let s = state();
        assert_eq!(s.broker_url(), "ws://h/mqtt");
        let s = s.reduce(Action::SetBrokerUrl(" wss://other:8884/mqtt ".into()));
        assert_eq!(s.broker_url(), "wss://other:8884/mqtt");
        assert_eq!(s.session_gen, 1);
        // Setting the same again does not reconnect; clearing returns to the default.
        let s = s.reduce(Action::SetBrokerUrl("wss://other:8884/mqtt".into()));
        assert_eq!(s.session_gen, 1);
        let s = s.reduce(Action::SetBrokerUrl(String::new()));
        assert_eq!(s.broker_url(), "ws://h/mqtt");
        assert_eq!(s.custom_url, None);
        assert_eq!(s.session_gen, 2);
    }

    #[test]
    fn topic_view_keeps_last_payload_and_deletions() {
        let s = run(
            state(),
            [
                msg("a/b", "1", false, 1),
                msg("a/b", "2", false, 2),
                msg("a/c", "x", true, 3),
                msg("a/c", "", true, 4),
            ],
        );
        assert_eq!(s.topics.len(), 1);
        let e = &s.topics["a/b"];
        assert_eq!((e.preview.as_str(), e.count, e.at_ms), ("2", 2, 2));
        let long = "é".repeat(MAX_PREVIEW_CHARS + 10);
        let s = s.reduce(msg("big", &long, false, 5));
        assert_eq!(s.topics["big"].preview.chars().count(), MAX_PREVIEW_CHARS);
        assert_eq!(s.topics["big"].len, long.len());
    }

    #[test]
    fn removed_device_leaves_its_detail_view() {
        let s = run(
            state(),
            [
                Action::Connected,
                msg(
                    "homeassistant/switch/p1/config",
                    r#"{"name":"P1","command_topic":"p1/set","state_topic":"p1/state","unique_id":"p1","device":{"identifiers":["p1"],"name":"P1"}}"#,
                    true,
                    0,
                ),
            ],
        );
        let id = s.registry.devices().next().expect("discovered").id.clone();
        // Its state topic is subscribed dynamically.
        assert!(s.subscribed().contains("p1/state"));
        let s = run(
            s,
            [
                Action::Navigate(Route::Device(id)),
                msg("homeassistant/switch/p1/config", "", true, 1),
            ],
        );
        assert_eq!(s.route, Route::Home);
    }

    #[test]
    fn theme_toggle() {
        assert_eq!(Theme::System.toggled(true), Theme::Light);
        assert_eq!(Theme::System.toggled(false), Theme::Dark);
        for t in [Theme::System, Theme::Light, Theme::Dark] {
            assert_eq!(Theme::parse(t.as_str()), t);
        }
    }

    fn kettle_timer() -> Schedule {
        Schedule {
            id: "kitchen-abc123".into(),
            device: Some("tasmota:kitchen".into()),
            room: None,
            relay: 0,
            enabled: true,
            rule: schedule::Rule::OffAfter { seconds: 1800 },
        }
    }

    #[test]
    fn schedules_follow_their_retained_messages() {
        let topic = "switchboard/schedules/kitchen-abc123";
        let json = kettle_timer()
            .to_message()
            .unwrap()
            .payload_str()
            .into_owned();
        let s = run(
            state(),
            [
                msg(topic, &json, true, 1),
                msg("switchboard/schedules/junk", "{not json", true, 2),
            ],
        );
        assert_eq!(s.schedules.len(), 2);
        assert_eq!(s.schedules["kitchen-abc123"].schedule, Ok(kettle_timer()));
        assert!(s.schedules["junk"].schedule.is_err());
        assert!(
            s.notices.is_empty(),
            "a bad payload is flagged, not announced"
        );
        let s = s.reduce(msg(topic, "", true, 3));
        assert_eq!(s.schedules.keys().collect::<Vec<_>>(), ["junk"]);
    }

    #[test]
    fn saving_publishes_retained_at_qos_1() {
        let s = live_with_kettle().reduce(Action::SaveSchedule(kettle_timer()));
        let sent: Vec<OutgoingMessage> = s
            .pending_effects()
            .filter_map(|(_, e)| match e {
                Effect::Publish(m) => Some(m.clone()),
                Effect::Subscribe(_) => None,
            })
            .collect();
        assert_eq!(sent, [kettle_timer().to_message().unwrap()]);
        assert!(sent[0].retain);
        assert_eq!(sent[0].qos, 1);
        // Shown once the broker echoes it.
        assert!(s.schedules.is_empty());
        let s = s.reduce(msg(&sent[0].topic, &sent[0].payload_str(), false, 5));
        assert!(s.schedules["kitchen-abc123"].schedule.is_ok());
    }

    #[test]
    fn invalid_or_offline_saves_only_explain() {
        let bad = Schedule {
            room: Some("Kitchen".into()),
            ..kettle_timer()
        };
        let s = live_with_kettle().reduce(Action::SaveSchedule(bad));
        assert!(publishes(&s).is_empty());
        assert_eq!(s.notices.len(), 1);
        assert!(s.notices[0].text.starts_with("The schedule was not saved"));

        let s = run(
            live_with_kettle(),
            [
                Action::Disconnected {
                    retry_at_ms: 5,
                    reason: "gone".into(),
                },
                Action::SaveSchedule(kettle_timer()),
                Action::DeleteSchedule("kitchen-abc123".into()),
            ],
        );
        assert!(publishes(&s).is_empty());
        assert_eq!(s.notices.len(), 2);
        assert!(s.notices[0].text.contains("the schedule was not saved"));
    }

    #[test]
    fn toggling_and_deleting() {
        let timer = kettle_timer().to_message().unwrap();
        let s = live_with_kettle().reduce(msg(&timer.topic, &timer.payload_str(), true, 1));
        let upto = s.outbox_end();
        let s = s.reduce(Action::EffectsDone { upto });

        let off = s.clone().reduce(Action::SetScheduleEnabled {
            id: "kitchen-abc123".into(),
            enabled: false,
        });
        let expected = Schedule {
            enabled: false,
            ..kettle_timer()
        };
        assert_eq!(
            publishes(&off),
            [(
                timer.topic.clone(),
                expected.to_message().unwrap().payload_str().into_owned(),
                true
            )]
        );
        // Unknown ids change nothing.
        let none = s.clone().reduce(Action::SetScheduleEnabled {
            id: "nope".into(),
            enabled: false,
        });
        assert!(publishes(&none).is_empty());

        let deleted = s.reduce(Action::DeleteSchedule("kitchen-abc123".into()));
        assert_eq!(
            publishes(&deleted),
            [(timer.topic.clone(), String::new(), true)]
        );
    }

    #[test]
    fn failed_publishes_of_stored_things_are_announced() {
        let s = run(
            live_with_kettle(),
            [
                Action::PublishFailed {
                    topic: "switchboard/schedules/a".into(),
                    reason: "rejected by the broker".into(),
                },
                Action::PublishFailed {
                    topic: "cmnd/kitchen/POWER".into(),
                    reason: "rejected by the broker".into(),
                },
                Action::PublishFailed {
                    topic: "switchboard/meta/tasmota:kitchen".into(),
                    reason: "expired while offline".into(),
                },
            ],
        );
        let texts: Vec<&str> = s.notices.iter().map(|n| n.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "The schedule was not saved: rejected by the broker",
                "The name and room were not saved: expired while offline",
            ]
        );
        assert!(s.notices.iter().all(|n| n.kind == NoticeKind::Error));
    }
}
