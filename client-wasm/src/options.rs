//! Connection options of the `Client` (wasm32), and the CONNECT packet and client state they
//! make. Plain Rust (no web-sys): the JavaScript API fills the same struct from an options
//! object.

use std::time::Duration;

use switchboard_mqtt::client::ClientState;
use switchboard_mqtt::{ByteString, Bytes, Connect, LastWill, Properties, ProtocolVersion};

use crate::Error;
use crate::policy::Backoff;

/// How the client proves who it is ([`Options::auth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// [`Options::username`] and [`Options::password`], if set, travel in CONNECT as they are:
    /// readable by anyone on the path unless the URL is `wss://`.
    #[default]
    Password,
    /// SCRAM-SHA-256 (RFC 7677) over MQTT 5 enhanced authentication: the user name and
    /// password prove the user without the password crossing the network, and the broker must
    /// prove it holds the user's verifier before the connection counts as up. A fresh
    /// exchange (fresh nonce) runs on every reconnection. Needs [`ProtocolVersion::V5`], both
    /// a user name and a password, and the cargo feature `scram` (on in the JavaScript
    /// package). The broker needs SCRAM credentials (Switchboard: `[scram] file`).
    ScramSha256,
}

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
    /// How `username` and `password` are used. Default [`AuthMethod::Password`].
    pub auth: AuthMethod,
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
            auth: AuthMethod::Password,
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

    /// Checks that the options can work, before anything connects.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] without URLs, or for [`AuthMethod::ScramSha256`] without
    /// MQTT 5, a user name or a password (or without the `scram` feature).
    pub fn validate(&self) -> Result<(), Error> {
        if self.urls.is_empty() {
            return Err(Error::InvalidOptions("no broker URL"));
        }
        if self.auth == AuthMethod::ScramSha256 {
            if !cfg!(feature = "scram") {
                return Err(Error::InvalidOptions(
                    "SCRAM-SHA-256 is not built in (cargo feature `scram`)",
                ));
            }
            if !self.protocol.is_v5() {
                return Err(Error::InvalidOptions(
                    "SCRAM-SHA-256 needs MQTT 5 (protocolVersion: 5)",
                ));
            }
            if self.username.is_none() || self.password.is_none() {
                return Err(Error::InvalidOptions(
                    "SCRAM-SHA-256 needs a username and a password",
                ));
            }
        }
        Ok(())
    }

    /// The CONNECT sent on every (re)connection, with `client_id` (the configured one or the
    /// random one the driver made). With [`AuthMethod::ScramSha256`] it carries neither user
    /// name nor password: the exchange proves them.
    #[must_use]
    pub fn connect_packet(&self, client_id: &str) -> Connect {
        let mut connect = Connect::new(self.protocol, ByteString::from(client_id));
        connect.clean_start = self.clean_start;
        connect.keep_alive = self.keep_alive;
        if self.auth == AuthMethod::Password {
            connect.username = self.username.as_deref().map(ByteString::from);
            connect.password.clone_from(&self.password);
        }
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

    /// The sans-I/O session these options describe: [`Options::connect_packet`], and with
    /// [`AuthMethod::ScramSha256`] a SCRAM client whose nonces come from `random` (which fills
    /// a buffer with unpredictable bytes: `crypto.getRandomValues` in the browser).
    #[must_use]
    #[cfg_attr(
        not(feature = "scram"),
        expect(unused_variables, reason = "`random` only makes SCRAM nonces")
    )]
    pub fn client_state(&self, client_id: &str, random: fn(&mut [u8])) -> ClientState {
        let state = ClientState::new(self.connect_packet(client_id));
        #[cfg(feature = "scram")]
        if self.auth == AuthMethod::ScramSha256 && self.protocol.is_v5() {
            let user = self.username.clone().unwrap_or_default();
            let password = self.password.as_deref().unwrap_or_default();
            return state.with_enhanced_auth(Box::new(switchboard_mqtt::scram::ScramClient::new(
                user, password, random,
            )));
        }
        state
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

    fn scram_options() -> Options {
        let mut o = Options::new("ws://h/mqtt");
        o.protocol = ProtocolVersion::V5;
        o.auth = AuthMethod::ScramSha256;
        o.username = Some("plug".into());
        o.password = Some(Bytes::from_static(b"s3cret"));
        o
    }

    #[cfg(feature = "scram")]
    #[test]
    fn scram_needs_mqtt5_and_credentials() {
        assert_eq!(scram_options().validate(), Ok(()));
        let mut o = scram_options();
        o.protocol = ProtocolVersion::V3_1_1;
        assert_eq!(
            o.validate(),
            Err(Error::InvalidOptions(
                "SCRAM-SHA-256 needs MQTT 5 (protocolVersion: 5)"
            ))
        );
        assert_eq!(o.validate().unwrap_err().code(), "invalid_options");
        let mut o = scram_options();
        o.password = None;
        assert!(o.validate().is_err());
        let mut o = scram_options();
        o.username = None;
        assert!(o.validate().is_err());
        assert!(Options::with_urls(Vec::new()).validate().is_err());
    }

    #[cfg(not(feature = "scram"))]
    #[test]
    fn scram_is_refused_without_the_feature() {
        assert_eq!(
            scram_options().validate().unwrap_err().code(),
            "invalid_options"
        );
    }

    #[cfg(feature = "scram")]
    #[test]
    fn scram_connect_carries_no_password_and_a_fresh_exchange_each_time() {
        use std::time::Duration;
        use switchboard_mqtt::Packet;
        use switchboard_mqtt::client::Action;

        /// A "random" source that differs on every call.
        fn counting(buf: &mut [u8]) {
            static CALLS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
            buf.fill(CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        }
        let o = scram_options();
        let mut state = o.client_state("sb-abc", counting);
        let mut first_messages = Vec::new();
        for _ in 0..2 {
            state.handle_connected(Duration::ZERO);
            let Some(Action::Send(Packet::Connect(c))) = state.poll_action() else {
                panic!("CONNECT first");
            };
            assert_eq!((c.username, c.password), (None, None));
            assert_eq!(
                c.properties.authentication_method.as_deref(),
                Some("SCRAM-SHA-256")
            );
            let data = c.properties.authentication_data.unwrap();
            let text = std::str::from_utf8(&data).unwrap().to_owned();
            assert!(text.starts_with("n,,n=plug,r="), "{text}");
            assert!(!text.contains("s3cret"));
            first_messages.push(text);
            state.handle_connection_lost();
            state.drain_actions().for_each(drop);
        }
        assert_ne!(
            first_messages[0], first_messages[1],
            "a fresh nonce per connection"
        );

        // Plain password login is unchanged; in v5 it uses no enhanced authentication.
        let mut o = scram_options();
        o.auth = AuthMethod::Password;
        let c = o.connect_packet("sb-abc");
        assert_eq!(c.password.as_deref(), Some(&b"s3cret"[..]));
        let mut state = o.client_state("sb-abc", |_| unreachable!("no nonce without SCRAM"));
        state.handle_connected(Duration::ZERO);
        let Some(Action::Send(Packet::Connect(c))) = state.poll_action() else {
            panic!("CONNECT first");
        };
        assert_eq!(c.properties.authentication_method, None);
    }
}
