//! Custom hooks: where the pure state meets the browser.
//!
//! Every resource (the MQTT session, reconnect and time-out timers, event listeners) lives in a
//! hook's effect and is released by the effect's cleanup, so unmounting the app (or a component
//! test finishing) cancels everything.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use yew::prelude::*;

use crate::browser;
use crate::port::{CloseCause, ConnectOptions, ConnectorHandle, Session, SessionEvent};
use crate::route::Route;
use crate::state::{Action, AppState, Conn, Credentials, Theme};

/// The app state, from the context (re-renders on every change: use it in views, not leaves).
pub type AppHandle = UseReducerHandle<AppState>;
/// The dispatcher, from its own context (stable: leaves using only it re-render on props alone).
pub type AppDispatch = UseReducerDispatcher<AppState>;

/// The app state. Panics outside the [`crate::App`].
#[hook]
pub fn use_app() -> AppHandle {
    use_context::<AppHandle>().expect("AppState context provided by App")
}

/// The dispatcher. Panics outside the [`crate::App`].
#[hook]
pub fn use_dispatch() -> AppDispatch {
    use_context::<AppDispatch>().expect("AppDispatch context provided by App")
}

/// Back-off before reconnect attempt number `failures` (0-based): 1 s doubling to 30 s.
#[must_use]
pub fn backoff_ms(failures: u32) -> u64 {
    1_000u64.saturating_mul(1 << failures.min(5)).min(30_000)
}

/// What [`use_mqtt`] offers its caller.
#[derive(Clone)]
pub struct MqttHandle {
    retry: Callback<()>,
}

impl std::fmt::Debug for MqttHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MqttHandle")
    }
}

impl PartialEq for MqttHandle {
    fn eq(&self, other: &Self) -> bool {
        self.retry == other.retry
    }
}

impl MqttHandle {
    /// Skips the back-off and reconnects now.
    pub fn retry_now(&self) {
        self.retry.emit(());
    }

    /// The same as a callback (for buttons).
    #[must_use]
    pub fn retry_callback(&self) -> Callback<()> {
        self.retry.clone()
    }
}

/// Credentials read from `localStorage` (`user\npassword`).
#[must_use]
pub fn stored_credentials() -> Option<Credentials> {
    let raw = browser::load(browser::KEY_CREDENTIALS)?;
    let (username, password) = raw.split_once('\n')?;
    Some(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
        remember: true,
    })
}

/// Keeps one MQTT session open to the state's broker URL with its credentials: reports what
/// the session says as actions, runs the effects the reducer queues, and reconnects with
/// back-off when the session ends (not after an authorisation failure: the login screen waits
/// for new credentials).
#[hook]
pub fn use_mqtt(app: &AppHandle, connector: &ConnectorHandle) -> MqttHandle {
    let session: Rc<RefCell<Option<Box<dyn Session>>>> = use_mut_ref(|| None);
    let attempt = use_state_eq(|| 0u64);
    let failures = use_mut_ref(|| 0u32);
    let sent_upto = use_mut_ref(|| 0u64);
    let client_id = use_memo((), |()| {
        format!(
            "switchboard-www-{:08x}",
            (js_sys::Math::random() * f64::from(u32::MAX)) as u32
        )
    });
    let paused = matches!(app.conn, Conn::AuthRequired { .. });
    let options = ConnectOptions {
        url: app.broker_url().to_owned(),
        client_id: (*client_id).clone(),
        username: app.credentials.as_ref().map(|c| c.username.clone()),
        password: app.credentials.as_ref().map(|c| c.password.clone()),
    };

    {
        let session = session.clone();
        let dispatch = app.dispatcher();
        let attempt = attempt.clone();
        use_effect_with(
            (
                options,
                app.session_gen,
                *attempt,
                paused,
                connector.clone(),
            ),
            move |(options, _, n, paused, connector)| {
                // Cleared by the cleanup, so late events of a dropped session are ignored.
                let alive = Rc::new(Cell::new(true));
                let retry_timer: Rc<RefCell<Option<Timeout>>> = Rc::default();
                if !*paused {
                    dispatch.dispatch(Action::Connecting);
                    let events = {
                        let alive = alive.clone();
                        let retry_timer = retry_timer.clone();
                        let n = *n;
                        Callback::from(move |event: SessionEvent| {
                            if !alive.get() {
                                return;
                            }
                            match event {
                                SessionEvent::Connected => {
                                    *failures.borrow_mut() = 0;
                                    dispatch.dispatch(Action::Connected);
                                }
                                SessionEvent::Message {
                                    topic,
                                    payload,
                                    retain,
                                } => dispatch.dispatch(Action::Message {
                                    topic,
                                    payload,
                                    retain,
                                    now_ms: browser::now_ms(),
                                }),
                                SessionEvent::Reconnecting {
                                    retry_at_ms,
                                    reason,
                                } => dispatch.dispatch(Action::Disconnected {
                                    retry_at_ms,
                                    reason,
                                }),
                                SessionEvent::PublishFailed { topic, reason } => {
                                    dispatch.dispatch(Action::PublishFailed { topic, reason });
                                }
                                SessionEvent::Closed(CloseCause::NotAuthorized(reason)) => {
                                    dispatch.dispatch(Action::AuthFailed(reason));
                                }
                                SessionEvent::Closed(CloseCause::Lost(reason)) => {
                                    let delay = {
                                        let mut f = failures.borrow_mut();
                                        let d = backoff_ms(*f);
                                        *f = f.saturating_add(1);
                                        d
                                    };
                                    dispatch.dispatch(Action::Disconnected {
                                        retry_at_ms: browser::now_ms() + delay,
                                        reason,
                                    });
                                    let attempt = attempt.clone();
                                    let delay = u32::try_from(delay).unwrap_or(u32::MAX);
                                    *retry_timer.borrow_mut() =
                                        Some(Timeout::new(delay, move || attempt.set(n + 1)));
                                }
                            }
                        })
                    };
                    *session.borrow_mut() = Some(connector.0.connect(options.clone(), events));
                }
                move || {
                    alive.set(false);
                    retry_timer.borrow_mut().take();
                    session.borrow_mut().take();
                }
            },
        );
    }

    // Run queued effects on the session.
    {
        let session = session.clone();
        let app = app.clone();
        use_effect_with(app.outbox_end(), move |&end| {
            let mut done = sent_upto.borrow_mut();
            if let Some(s) = session.borrow().as_ref() {
                for (n, effect) in app.pending_effects() {
                    if n < *done {
                        continue;
                    }
                    match effect.clone() {
                        crate::state::Effect::Subscribe(filters) => s.subscribe(filters),
                        crate::state::Effect::Publish(m) => s.publish(m),
                    }
                }
            }
            if app.pending_effects().next().is_some() {
                *done = end;
                app.dispatch(Action::EffectsDone { upto: end });
            }
        });
    }

    let retry = {
        let attempt = attempt.clone();
        Callback::from(move |()| attempt.set(*attempt + 1))
    };
    MqttHandle { retry }
}

/// Calls `Registry::tick` (through [`Action::Tick`]) when the earliest pending command's time-out is due.
#[hook]
pub fn use_command_timeouts(app: &AppHandle) {
    let dispatch = app.dispatcher();
    use_effect_with(app.registry.next_deadline(), move |deadline| {
        let timer = deadline.map(|at| {
            let wait = at.saturating_sub(browser::now_ms()).saturating_add(20);
            Timeout::new(u32::try_from(wait).unwrap_or(u32::MAX), move || {
                dispatch.dispatch(Action::Tick {
                    now_ms: browser::now_ms(),
                });
            })
        });
        move || drop(timer)
    });
}

/// Mirrors the route into `location.hash` and back (back button, links, bookmarks).
#[hook]
pub fn use_hash_route(app: &AppHandle) {
    let dispatch = app.dispatcher();
    use_effect_with((), move |()| {
        let listener = web_sys::window().map(|w| {
            EventListener::new(&w, "hashchange", move |_| {
                dispatch.dispatch(Action::Navigate(Route::parse(&browser::hash())));
            })
        });
        move || drop(listener)
    });
    use_effect_with(app.route.clone(), |route| {
        // The home route is written as an empty hash only when one is already there.
        if *route != Route::Home || !browser::hash().is_empty() {
            browser::set_hash(&route.to_hash());
        }
    });
}

/// Tracks `navigator.onLine`.
#[hook]
pub fn use_network_status(app: &AppHandle) {
    let dispatch = app.dispatcher();
    use_effect_with((), move |()| {
        dispatch.dispatch(Action::NetworkOnline(browser::network_online()));
        let listeners = web_sys::window().map(|w| {
            let on = dispatch.clone();
            let off = dispatch;
            (
                EventListener::new(&w, "online", move |_| {
                    on.dispatch(Action::NetworkOnline(true));
                }),
                EventListener::new(&w, "offline", move |_| {
                    off.dispatch(Action::NetworkOnline(false));
                }),
            )
        });
        move || drop(listeners)
    });
}

/// Applies and stores the theme, the broker URL and (when asked to remember) the credentials.
#[hook]
pub fn use_persisted_settings(app: &AppHandle) {
    use_effect_with(app.theme, |theme| {
        browser::apply_theme(theme.as_str());
        let stored = (*theme != Theme::System).then(|| theme.as_str());
        browser::store(browser::KEY_THEME, stored);
    });
    use_effect_with(app.custom_url.clone(), |url| {
        browser::store(browser::KEY_BROKER_URL, url.as_deref());
    });
    use_effect_with(app.credentials.clone(), |c| {
        let remembered = c
            .as_ref()
            .filter(|c| c.remember)
            .map(|c| format!("{}\n{}", c.username, c.password));
        browser::store(browser::KEY_CREDENTIALS, remembered.as_deref());
    });
}

/// Seconds left until `at_ms`, refreshed every second while in the future.
#[hook]
pub fn use_countdown(at_ms: Option<u64>) -> Option<u64> {
    let now = use_state(browser::now_ms);
    {
        let now = now.clone();
        use_effect_with(at_ms, move |at| {
            now.set(browser::now_ms());
            let interval = at.map(|_| {
                let now = now.clone();
                gloo_timers::callback::Interval::new(250, move || now.set(browser::now_ms()))
            });
            move || drop(interval)
        });
    }
    // The state only triggers re-renders; the clock is read fresh so the first render after
    // `at_ms` changes is right too.
    let _ticks = *now;
    at_ms.map(|at| at.saturating_sub(browser::now_ms()).div_ceil(1_000))
}
