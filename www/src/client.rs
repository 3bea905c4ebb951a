//! The [`Connector`] of the page: sessions over `switchboard-client`'s WebSocket [`Client`].
//!
//! One [`Client`] per session. The client can reconnect by itself, but its events do not say
//! when the next attempt is due, and the banner shows a countdown: so a session ends at the
//! first `Offline` and [`crate::hooks::use_mqtt`] opens the next one after its own back-off.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_util::StreamExt;
use switchboard_client::{Client, ConnectionEvent, Error, Options, QoS};
use switchboard_devices::OutgoingMessage;
use switchboard_mqtt::{ReasonCode, SubscriptionOptions};
use wasm_bindgen_futures::spawn_local;
use yew::Callback;

use crate::port::{CloseCause, ConnectOptions, Connector, Session, SessionEvent};

/// Opens [`switchboard_client::Client`] sessions.
#[derive(Clone, Copy, Debug, Default)]
pub struct WebSocketConnector;

/// A session: the client once connected, and whether the session is still wanted.
struct WsSession {
    /// Set when CONNACK arrived; taken (and ended) when the session ends or is dropped.
    client: Rc<RefCell<Option<Client>>>,
    /// Cleared on drop: a connect still under way ends its client when it resolves, and
    /// publishes still in flight report nothing.
    alive: Rc<Cell<bool>>,
    /// Where publish failures are reported.
    events: Callback<SessionEvent>,
}

impl Drop for WsSession {
    fn drop(&mut self) {
        self.alive.set(false);
        if let Some(c) = self.client.borrow_mut().take() {
            c.end();
        }
    }
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

impl Session for WsSession {
    fn subscribe(&self, filters: Vec<String>) {
        if let Some(c) = self.client.borrow().as_ref() {
            let list: Vec<(&str, SubscriptionOptions)> = filters
                .iter()
                .map(|f| (f.as_str(), SubscriptionOptions::qos(QoS::AtMostOnce)))
                .collect();
            // The answers are not needed: a refused filter just brings no messages.
            drop(c.subscribe_many(&list));
        }
    }

    fn publish(&self, message: OutgoingMessage) {
        let Some(c) = self.client.borrow().clone() else {
            return;
        };
        let (alive, events) = (self.alive.clone(), self.events.clone());
        spawn_local(async move {
            let outcome = c
                .publish(
                    &message.topic,
                    message.payload,
                    qos(message.qos),
                    message.retain,
                )
                .await;
            // `Closed`: the session was ended on purpose, and the next one starts afresh.
            if let Err(e) = outcome
                && e != Error::Closed
                && alive.get()
            {
                events.emit(SessionEvent::PublishFailed {
                    topic: message.topic,
                    reason: e.message().to_owned(),
                });
            }
        });
    }
}

fn refused(code: ReasonCode) -> bool {
    matches!(
        code,
        ReasonCode::NotAuthorized | ReasonCode::BadUserNameOrPassword
    )
}

impl Connector for WebSocketConnector {
    fn connect(&self, o: ConnectOptions, events: Callback<SessionEvent>) -> Box<dyn Session> {
        let session = WsSession {
            client: Rc::default(),
            alive: Rc::new(Cell::new(true)),
            events: events.clone(),
        };
        let (slot, alive) = (session.client.clone(), session.alive.clone());
        spawn_local(async move {
            let mut options = Options::new(o.url);
            options.client_id = Some(o.client_id);
            options.username = o.username;
            options.password = o.password.map(Into::into);
            let client = match Client::connect(options).await {
                Ok(c) => c,
                Err(e) => {
                    let cause = match e {
                        Error::Refused(code) if refused(code) => {
                            CloseCause::NotAuthorized(e.to_string())
                        }
                        e => CloseCause::Lost(e.to_string()),
                    };
                    if alive.get() {
                        events.emit(SessionEvent::Closed(cause));
                    }
                    return;
                }
            };
            if !alive.get() {
                client.end();
                return;
            }
            let (Some(mut messages), Some(mut changes)) = (client.messages(), client.events())
            else {
                client.end();
                events.emit(SessionEvent::Closed(CloseCause::Lost("no streams".into())));
                return;
            };
            *slot.borrow_mut() = Some(client);
            events.emit(SessionEvent::Connected);
            {
                let (alive, events) = (alive.clone(), events.clone());
                spawn_local(async move {
                    while let Some(m) = messages.next().await {
                        if !alive.get() {
                            return;
                        }
                        events.emit(SessionEvent::Message {
                            topic: m.topic.to_string(),
                            payload: m.payload.to_vec(),
                            retain: m.retain,
                        });
                    }
                });
            }
            while let Some(change) = changes.next().await {
                let reason = match change {
                    ConnectionEvent::Offline => "connection lost".to_owned(),
                    ConnectionEvent::Ended => "connection ended".to_owned(),
                    ConnectionEvent::Error(e) => e.to_string(),
                    _ => continue,
                };
                if let Some(c) = slot.borrow_mut().take() {
                    c.end();
                }
                if alive.get() {
                    events.emit(SessionEvent::Closed(CloseCause::Lost(reason)));
                }
                return;
            }
        });
        Box::new(session)
    }
}
