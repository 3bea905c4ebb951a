//! The dashboard's port to an MQTT connection.
//!
//! Components and the reducer never see a WebSocket or an MQTT client: the [`crate::hooks`]
//! ask a [`Connector`] (provided through a context, so tests can swap in a fake) for a
//! [`Session`], feed the [`SessionEvent`]s it reports into the state as actions, and run the
//! [`crate::state::Effect`]s the reducer queues (subscribe, publish) on it. Dropping a session
//! disconnects it and stops its events.

use std::fmt;
use std::rc::Rc;

use switchboard_devices::OutgoingMessage;
use yew::Callback;

/// What a session needs to reach a broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// `ws://` or `wss://` URL of the broker's MQTT-over-WebSocket endpoint.
    pub url: String,
    /// MQTT client identifier.
    pub client_id: String,
    /// User name, when the broker wants credentials.
    pub username: Option<String>,
    /// Password, when the broker wants credentials.
    pub password: Option<String>,
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The broker refused the credentials (CONNACK "not authorized" or "bad user name or
    /// password"): retrying without new credentials is pointless.
    NotAuthorized(String),
    /// The transport failed or the broker closed it; worth retrying.
    Lost(String),
}

/// What a session reports, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// CONNACK accepted: subscriptions may be made (again: sessions are clean).
    Connected,
    /// An application message.
    Message {
        /// Topic name.
        topic: String,
        /// Payload bytes.
        payload: Vec<u8>,
        /// The PUBLISH's retain flag (retained state is the first paint).
        retain: bool,
    },
    /// The connection dropped and the session itself retries at `retry_at_ms` (`Date.now()`
    /// clock). Sessions that do not retry report [`SessionEvent::Closed`] instead and the
    /// dashboard opens a new one after a back-off.
    Reconnecting {
        /// When the next attempt starts.
        retry_at_ms: u64,
        /// What went wrong.
        reason: String,
    },
    /// The broker did not take a QoS 1 publish: it answered with a failure code, or the
    /// message expired unsent while the connection was down.
    PublishFailed {
        /// The message's topic.
        topic: String,
        /// Why, for a person.
        reason: String,
    },
    /// The session is over.
    Closed(CloseCause),
}

/// A live (or connecting) MQTT session. Dropping it disconnects.
pub trait Session {
    /// Subscribes to `filters` (QoS 0 is enough for a dashboard).
    fn subscribe(&self, filters: Vec<String>);
    /// Publishes `message` with its topic, payload, QoS and retain flag; a failure is
    /// reported as [`SessionEvent::PublishFailed`].
    fn publish(&self, message: OutgoingMessage);
}

/// Opens sessions.
pub trait Connector {
    /// Starts connecting; `events` receives everything the session reports until it is dropped.
    fn connect(&self, options: ConnectOptions, events: Callback<SessionEvent>) -> Box<dyn Session>;
}

/// A shareable [`Connector`] for the context: equal when it is the same connector.
#[derive(Clone)]
pub struct ConnectorHandle(pub Rc<dyn Connector>);

impl ConnectorHandle {
    /// Wraps a connector.
    pub fn new(connector: impl Connector + 'static) -> Self {
        Self(Rc::new(connector))
    }
}

impl PartialEq for ConnectorHandle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for ConnectorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectorHandle")
    }
}
