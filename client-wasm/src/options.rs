//! Connection options of the `Client` (wasm32), and the CONNECT packet they make. Plain Rust
//! (no web-sys): the JavaScript API fills the same struct from an options object.

use std::time::Duration;

use switchboard_mqtt::{ByteString, Bytes, Connect, LastWill, Properties, ProtocolVersion};

use crate::policy::Backoff;

/// How to connect, reconnect and queue. Build with [`Options::new`] and change the fields.
#[derive(Debug, Clone)]
pub struct Options {
    /// Broker WebSocket URLs (`ws://host/mqtt`, `wss://...`), tried in turn: a backup broker
    /// takes over when the first is down.
    pub urls: Vec<String>,
    /// MQTT 3.1.1 (default) or 5.0.
    pub protocol: ProtocolVersion,
    /// Client identifier; `None` makes a random `sb-xxxxxxxxxxxx` one, unique per tab.
    pub client_id: Option<String>,
    /// Clean session (3.1.1) / clean start (5.0). Default `true`.
    pub clean_start: bool,
    /// Keep alive in seconds, 0 = off. Default 30.
    pub keep_alive: u16,
    /// v5 Session Expiry Interval in seconds, for persistent sessions.
    pub session_expiry: Option<u32>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Will message.
    pub will: Option<LastWill>,
    /// Other v5 CONNECT properties (user properties, receive maximum, ...).
    pub properties: Properties,
    /// Time allowed from opening the WebSocket to CONNACK. Default 10 s.
    pub connect_timeout: Duration,
    /// First reconnect delay ceiling. Default 500 ms.
    pub backoff_base: Duration,
    /// Largest reconnect delay. Default 30 s.
    pub backoff_max: Duration,
    /// Uptime after which the back-off starts again from `backoff_base`. Default 10 s.
    pub stable_after: Duration,
    /// How long a QoS 1/2 publication waits for a connection before it expires. Default 5 s.
    pub offline_expiry: Duration,
    /// Most publications kept while offline. Default 100.
    pub offline_queue_max: usize,
    /// Largest packet accepted from the broker, in bytes (announced in v5 CONNECT as Maximum
    /// Packet Size; a larger one closes the connection). Default 1 MiB.
    pub max_packet_size: u32,
}

impl Options {
    /// Defaults for one broker URL.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_urls(vec![url.into()])
    }

    /// Defaults for several broker URLs, tried in turn.
    #[must_use]
    pub fn with_urls(urls: Vec<String>) -> Self {
        Self {
            urls,
            protocol: ProtocolVersion::V3_1_1,
            client_id: None,
            clean_start: true,
            keep_alive: 30,
            session_expiry: None,
            username: None,
            password: None,
            will: None,
            properties: Properties::default(),
            connect_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            offline_expiry: Duration::from_secs(5),
            offline_queue_max: 100,
            max_packet_size: 1 << 20,
        }
    }

    /// The CONNECT sent on every (re)connection, with `client_id` (the configured one or the
    /// random one the driver made).
    #[must_use]
    pub fn connect_packet(&self, client_id: &str) -> Connect {
        let mut connect = Connect::new(self.protocol, ByteString::from(client_id));
        connect.clean_start = self.clean_start;
        connect.keep_alive = self.keep_alive;
        connect.username = self.username.as_deref().map(ByteString::from);
        connect.password.clone_from(&self.password);
        connect.will.clone_from(&self.will);
        if self.protocol.is_v5() {
            connect.properties = self.properties.clone();
            if self.session_expiry.is_some() {
                connect.properties.session_expiry_interval = self.session_expiry;
            }
            if connect.properties.maximum_packet_size.is_none() {
                connect.properties.maximum_packet_size = Some(self.max_packet_size);
            }
        }
        connect
    }

    /// The reconnect back-off these options describe.
    #[must_use]
    pub const fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff_base, self.backoff_max, self.stable_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_mqtt::QoS;

    #[test]
    fn connect_packet_from_options() {
        let mut o = Options::new("ws://h/mqtt");
        assert_eq!(o.protocol, ProtocolVersion::V3_1_1);
        o.clean_start = false;
        o.keep_alive = 15;
        o.username = Some("u".into());
        o.password = Some(Bytes::from_static(b"p"));
        o.session_expiry = Some(600);
        o.will = Some(LastWill {
            topic: "plugs/1/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        });
        let c = o.connect_packet("sb-abc");
        assert_eq!(&*c.client_id, "sb-abc");
        assert!(!c.clean_start);
        assert_eq!(c.keep_alive, 15);
        assert_eq!(c.username.as_deref(), Some("u"));
        assert!(c.will.as_ref().is_some_and(|w| w.retain));
        // Properties only go out in v5.
        assert!(c.properties.is_empty());
        o.protocol = ProtocolVersion::V5;
        let c = o.connect_packet("sb-abc");
        assert_eq!(c.properties.session_expiry_interval, Some(600));
        assert_eq!(c.properties.maximum_packet_size, Some(1 << 20));
    }
}
