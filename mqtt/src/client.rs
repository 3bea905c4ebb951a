//! Sans-I/O MQTT client session state.
//!
//! [`ClientState`] holds everything a client must remember about its session (packet ids,
//! QoS 1/2 messages in flight both ways, topic aliases, keep alive) and nothing about sockets
//! or clocks. The embedding code (tokio in the load generator, WebSocket callbacks in the
//! browser) feeds it events:
//!
//! - [`ClientState::handle_connected`] when the transport is up (it sends CONNECT),
//! - [`ClientState::handle_packet`] for every decoded packet,
//! - [`ClientState::handle_timer`] when the deadline it asked for has passed,
//! - [`ClientState::handle_connection_lost`] when the transport is gone,
//! - and the commands [`ClientState::publish`], [`ClientState::subscribe`],
//!   [`ClientState::unsubscribe`], [`ClientState::disconnect`].
//!
//! Each of those queues [`Action`]s in order; drain them with [`ClientState::poll_action`]:
//! send a packet (encode it with [`ClientState::protocol`]), arm a timer, deliver a message to
//! the application, report a completion, close the transport. Time is a [`Duration`] since any
//! origin the caller likes (no `Instant`, so this runs on wasm32 too).
//!
//! ```
//! use std::time::Duration;
//! use switchboard_mqtt::client::{Action, ClientState};
//! use switchboard_mqtt::{ConnAck, Connect, Packet, ProtocolVersion, ReasonCode};
//!
//! let mut client = ClientState::new(Connect::new(ProtocolVersion::V5, "lamp-1"));
//! client.handle_connected(Duration::ZERO);
//! assert!(matches!(client.poll_action(), Some(Action::Send(Packet::Connect(_)))));
//! assert_eq!(
//!     client.poll_action(),
//!     Some(Action::ArmTimer { at: Duration::from_secs(90) }) // no CONNACK in 1.5 x 60 s
//! );
//! client.handle_packet(ConnAck::new(false, ReasonCode::Success).into(), Duration::from_millis(5));
//! assert_eq!(client.poll_action(), Some(Action::Connected { session_present: false }));
//! ```
//!
//! Keep alive: a PINGREQ goes out when nothing was sent, or nothing received, for the keep
//! alive interval; the connection is declared dead when nothing at all was received for 1.5
//! times the interval.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;

use crate::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, Packet, PacketId, Properties, ProtocolVersion,
    PubAck, PubComp, PubRec, PubRel, Publish, QoS, QosPid, ReasonCode, Subscribe,
    SubscriptionOptions, Unsubscribe,
};

/// MQTT 5 enhanced authentication (section 4.12) for [`ClientState`]: the method's arithmetic,
/// without I/O (SCRAM-SHA-256, for example). Set with [`ClientState::with_enhanced_auth`]; the
/// state machine then sends the method and [`EnhancedAuth::start`]'s data in CONNECT, answers
/// each AUTH 0x18 from the server with [`EnhancedAuth::step`], and checks the CONNACK's
/// Authentication Data with [`EnhancedAuth::finish`] before reporting [`Action::Connected`].
pub trait EnhancedAuth: core::fmt::Debug + Send {
    /// The Authentication Method, e.g. `SCRAM-SHA-256`.
    fn method(&self) -> &str;
    /// Authentication Data for CONNECT. Called on every (re)connection, so each connection
    /// starts a fresh exchange.
    fn start(&mut self) -> Bytes;
    /// The data of the server's AUTH 0x18; returns the data of the AUTH 0x18 answer.
    ///
    /// # Errors
    /// The reason code to close with (v5 DISCONNECT) when the server's data is invalid.
    fn step(&mut self, data: &[u8]) -> Result<Bytes, ReasonCode>;
    /// The Authentication Data of a successful CONNACK: whether the server proved itself.
    ///
    /// # Errors
    /// The reason code to close with when it did not.
    fn finish(&mut self, data: Option<&[u8]>) -> Result<(), ReasonCode>;
}

/// Why the client wants the transport closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Nothing received for 1.5 times the keep alive interval (or no CONNACK in that time).
    KeepAliveTimeout,
    /// The server refused the connection with this CONNACK code.
    Refused(ReasonCode),
    /// The server sent DISCONNECT with this code.
    ServerDisconnect(ReasonCode),
    /// The server broke the protocol; in v5 a DISCONNECT with this code was queued first.
    ProtocolError(ReasonCode),
    /// Enhanced authentication failed on this side ([`EnhancedAuth::step`] or
    /// [`EnhancedAuth::finish`] returned this code): the server's data was invalid, or it did
    /// not prove itself (a wrong SCRAM server signature). A DISCONNECT with this code was
    /// queued first; the connection never counted as up.
    AuthFailed(ReasonCode),
    /// The application called [`ClientState::disconnect`].
    ClientDisconnect,
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The command needs a connection (QoS 0 publish, subscribe, unsubscribe).
    #[error("not connected")]
    NotConnected,
    /// All 65,535 packet identifiers are in use.
    #[error("no free packet identifier")]
    PacketIdsExhausted,
    /// The server's Maximum QoS is lower than requested.
    #[error("the server supports QoS up to {0:?}")]
    QoSNotSupported(QoS),
    /// The server does not support retained messages.
    #[error("the server does not support retained messages")]
    RetainNotSupported,
    /// The packet is larger than the server's Maximum Packet Size.
    #[error("packet of {size} bytes exceeds the server's maximum packet size {max}")]
    PacketTooLarge {
        /// Encoded size.
        size: usize,
        /// The server's limit.
        max: u32,
    },
    /// A SUBSCRIBE or UNSUBSCRIBE without topic filters.
    #[error("at least one topic filter is needed")]
    NoFilters,
    /// The connection was lost before the answer came (subscriptions are not retried).
    #[error("connection lost before the answer")]
    ConnectionLost,
}

/// Something the embedding code must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Encode this packet with [`ClientState::protocol`] and write it to the transport.
    Send(Packet),
    /// Call [`ClientState::handle_timer`] at (or after) `at`. Replaces any earlier timer.
    ArmTimer {
        /// The deadline, on the caller's clock.
        at: Duration,
    },
    /// CONNACK accepted. When `session_present` is false every earlier subscription is gone
    /// and must be made again.
    Connected {
        /// Whether the server resumed the session.
        session_present: bool,
    },
    /// An application message for the application (topic alias already resolved).
    Deliver(Publish),
    /// A QoS 1 or 2 publication finished: acknowledged, or refused with a reason code.
    PublishComplete {
        /// The id [`ClientState::publish`] returned.
        pid: PacketId,
        /// `Ok` when the server took it, `Err(code)` when its ack carried a failure code.
        result: Result<(), ReasonCode>,
    },
    /// SUBACK arrived (or the connection was lost first).
    SubscribeComplete {
        /// The id [`ClientState::subscribe`] returned.
        pid: PacketId,
        /// One code per filter.
        result: Result<Vec<ReasonCode>, ClientError>,
    },
    /// UNSUBACK arrived (or the connection was lost first).
    UnsubscribeComplete {
        /// The id [`ClientState::unsubscribe`] returned.
        pid: PacketId,
        /// One code per filter (empty before v5).
        result: Result<Vec<ReasonCode>, ClientError>,
    },
    /// Close the transport.
    Close {
        /// Why.
        reason: CloseReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Disconnected,
    /// CONNECT sent, waiting for CONNACK.
    Connecting,
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    Qos1Sent,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    Qos2Sent,
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

#[derive(Debug, Clone)]
struct Outgoing {
    /// Send order, for in-order retransmission [MQTT-4.6.0-1].
    seq: u64,
    stage: Stage,
    publish: Publish,
}

/// What the server allows, from CONNACK (defaults when absent).
#[derive(Debug, Clone, Copy)]
struct ServerLimits {
    receive_maximum: u16,
    topic_alias_maximum: u16,
    maximum_qos: QoS,
    retain_available: bool,
    maximum_packet_size: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            receive_maximum: u16::MAX,
            topic_alias_maximum: 0,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            maximum_packet_size: crate::varint::MAX + 5,
        }
    }
}

/// The client side of an MQTT session, without I/O. See the [module docs](self).
#[derive(Debug)]
pub struct ClientState {
    /// The CONNECT sent on every (re)connection; the client id is replaced by an assigned one.
    connect: Connect,
    conn: Conn,
    actions: VecDeque<Action>,
    /// Last time given by the caller.
    now: Duration,
    last_sent: Duration,
    last_received: Duration,
    /// Keep alive in force (CONNECT's, or the server's Server Keep Alive).
    keep_alive: Duration,
    armed: Option<Duration>,
    /// A PINGREQ was sent and nothing has been received since.
    ping_outstanding: bool,
    limits: ServerLimits,
    next_pid: u16,
    /// Every packet id in use: outgoing publications (sent or queued), SUBSCRIBE, UNSUBSCRIBE.
    pids_in_use: HashSet<PacketId>,
    next_seq: u64,
    /// QoS 1/2 publications sent and not yet completed, by packet id.
    outgoing: HashMap<PacketId, Outgoing>,
    /// QoS 1/2 publications waiting for a free slot under the server's Receive Maximum.
    queued: VecDeque<Publish>,
    /// Incoming QoS 2 packet ids delivered and waiting for PUBREL.
    incoming_qos2: HashSet<PacketId>,
    pending_subscribe: HashSet<PacketId>,
    pending_unsubscribe: HashSet<PacketId>,
    /// Topic aliases we assigned on this connection (reset on reconnect).
    alias_out: HashMap<ByteString, u16>,
    /// Topic aliases the server assigned on this connection (reset on reconnect).
    alias_in: HashMap<u16, ByteString>,
    /// Enhanced authentication (v5), when set.
    auth: Option<Box<dyn EnhancedAuth>>,
}

impl ClientState {
    /// A client that will send `connect` (its protocol, client id, keep alive, will,
    /// credentials and properties) on every connection. Use `clean_start: false` and, in v5, a
    /// Session Expiry Interval to keep the session (and its in-flight messages) across
    /// reconnects.
    #[must_use]
    pub fn new(connect: Connect) -> Self {
        let keep_alive = Duration::from_secs(u64::from(connect.keep_alive));
        Self {
            connect,
            conn: Conn::Disconnected,
            actions: VecDeque::new(),
            now: Duration::ZERO,
            last_sent: Duration::ZERO,
            last_received: Duration::ZERO,
            keep_alive,
            armed: None,
            ping_outstanding: false,
            limits: ServerLimits::default(),
            next_pid: 1,
            pids_in_use: HashSet::new(),
            next_seq: 0,
            outgoing: HashMap::new(),
            queued: VecDeque::new(),
            incoming_qos2: HashSet::new(),
            pending_subscribe: HashSet::new(),
            pending_unsubscribe: HashSet::new(),
            alias_out: HashMap::new(),
            alias_in: HashMap::new(),
            auth: None,
        }
    }

    /// Authenticates every (v5) connection with `auth` (MQTT 5 enhanced authentication).
    #[must_use]
    pub fn with_enhanced_auth(mut self, auth: Box<dyn EnhancedAuth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The protocol version to encode and decode with.
    #[must_use]
    pub const fn protocol(&self) -> ProtocolVersion {
        self.connect.protocol
    }

    /// Whether CONNACK accepted the connection and it is still up.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.conn == Conn::Connected
    }

    /// The next queued action, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// All queued actions, in order.
    pub fn drain_actions(&mut self) -> impl Iterator<Item = Action> + '_ {
        self.actions.drain(..)
    }

    /// The next time [`ClientState::handle_timer`] must be called, if any.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.conn == Conn::Disconnected || self.keep_alive.is_zero() {
            return None;
        }
        let dead = self.last_received + self.keep_alive * 3 / 2;
        if self.conn == Conn::Connecting || self.ping_outstanding {
            return Some(dead);
        }
        let ping = self.last_sent.min(self.last_received) + self.keep_alive;
        Some(ping.min(dead))
    }

    /// Number of outgoing QoS 1/2 publications sent and not completed.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.outgoing.len()
    }

    /// Number of outgoing QoS 1/2 publications waiting for the server's Receive Maximum.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// The transport is up: sends CONNECT.
    pub fn handle_connected(&mut self, now: Duration) {
        self.now = now;
        self.conn = Conn::Connecting;
        self.last_received = now;
        self.ping_outstanding = false;
        self.alias_in.clear();
        self.alias_out.clear();
        self.keep_alive = Duration::from_secs(u64::from(self.connect.keep_alive));
        let mut connect = self.connect.clone();
        if let Some(auth) = &mut self.auth
            && connect.protocol.is_v5()
        {
            connect.properties.authentication_method = Some(auth.method().into());
            connect.properties.authentication_data = Some(auth.start());
        }
        self.send(Packet::Connect(Box::new(connect)));
        self.arm();
    }

    /// The transport is gone. In-flight QoS 1/2 publications are kept for the next connection;
    /// pending subscribes and unsubscribes fail with [`ClientError::ConnectionLost`].
    pub fn handle_connection_lost(&mut self) {
        self.conn = Conn::Disconnected;
        self.armed = None;
        self.fail_pending_requests();
    }

    /// The deadline passed: sends PINGREQ or declares the connection dead.
    pub fn handle_timer(&mut self, now: Duration) {
        self.now = now;
        self.armed = None;
        if self.conn == Conn::Disconnected || self.keep_alive.is_zero() {
            return;
        }
        if now >= self.last_received + self.keep_alive * 3 / 2 {
            self.close(CloseReason::KeepAliveTimeout);
            return;
        }
        if self.conn == Conn::Connected
            && !self.ping_outstanding
            && now >= self.last_sent.min(self.last_received) + self.keep_alive
        {
            self.ping_outstanding = true;
            self.send(Packet::PingReq);
        }
        self.arm();
    }

    /// The embedding decoder failed: queues a DISCONNECT (v5) and a close.
    pub fn handle_decode_error(&mut self, error: &DecodeError) {
        self.protocol_error(error.reason_code());
    }

    /// A packet from the server.
    pub fn handle_packet(&mut self, packet: Packet, now: Duration) {
        self.now = now;
        self.last_received = now;
        self.ping_outstanding = false;
        match (self.conn, packet) {
            (Conn::Disconnected, _) => return,
            (Conn::Connecting, Packet::ConnAck(ack)) => self.on_connack(ack),
            (Conn::Connecting, Packet::Auth(auth)) if self.auth.is_some() => self.on_auth(auth),
            (Conn::Connecting, _) | (Conn::Connected, Packet::ConnAck(_)) => {
                self.protocol_error(ReasonCode::ProtocolError);
            }
            (Conn::Connected, packet) => self.on_packet(packet),
        }
        if self.conn != Conn::Disconnected {
            self.arm();
        }
    }

    /// Publishes a message. QoS 0 needs a connection; QoS 1 and 2 are queued while
    /// disconnected or while the server's Receive Maximum is reached, and their completion is
    /// reported with [`Action::PublishComplete`].
    ///
    /// # Errors
    /// See [`ClientError`]: not connected (QoS 0), QoS or retain not supported by the server,
    /// packet too large for the server, no free packet id.
    pub fn publish(
        &mut self,
        topic: impl Into<ByteString>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
        properties: Properties,
    ) -> Result<Option<PacketId>, ClientError> {
        if qos > self.limits.maximum_qos {
            return Err(ClientError::QoSNotSupported(self.limits.maximum_qos));
        }
        if retain && !self.limits.retain_available {
            return Err(ClientError::RetainNotSupported);
        }
        let mut publish = Publish {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain,
            topic: topic.into(),
            properties,
            payload: payload.into(),
        };
        // Room for the packet id, and for a topic alias property (3 bytes, plus one when the
        // property length grows) added when sending.
        let pid_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
        let alias_len = if self.protocol().is_v5() && self.limits.topic_alias_maximum > 0 {
            4
        } else {
            0
        };
        let size = publish.encoded_len(self.protocol()) + pid_len + alias_len;
        if size > self.limits.maximum_packet_size as usize {
            return Err(ClientError::PacketTooLarge {
                size,
                max: self.limits.maximum_packet_size,
            });
        }
        if qos == QoS::AtMostOnce {
            if self.conn != Conn::Connected {
                return Err(ClientError::NotConnected);
            }
            self.send_publish(publish);
            self.arm();
            return Ok(None);
        }
        let pid = self.alloc_pid()?;
        publish.qos_pid = QosPid::new(qos, pid);
        self.queued.push_back(publish);
        self.flush_queue();
        self.arm();
        Ok(Some(pid))
    }

    /// Subscribes to `filters`; the answer comes as [`Action::SubscribeComplete`].
    ///
    /// # Errors
    /// [`ClientError::NotConnected`], [`ClientError::NoFilters`],
    /// [`ClientError::PacketIdsExhausted`].
    pub fn subscribe(
        &mut self,
        filters: Vec<(ByteString, SubscriptionOptions)>,
        properties: Properties,
    ) -> Result<PacketId, ClientError> {
        if self.conn != Conn::Connected {
            return Err(ClientError::NotConnected);
        }
        if filters.is_empty() {
            return Err(ClientError::NoFilters);
        }
        let pid = self.alloc_pid()?;
        self.pending_subscribe.insert(pid);
        self.send(Packet::Subscribe(Subscribe {
            pid,
            filters,
            properties,
        }));
        self.arm();
        Ok(pid)
    }

    /// Unsubscribes from `filters`; the answer comes as [`Action::UnsubscribeComplete`].
    ///
    /// # Errors
    /// [`ClientError::NotConnected`], [`ClientError::NoFilters`],
    /// [`ClientError::PacketIdsExhausted`].
    pub fn unsubscribe(
        &mut self,
        filters: Vec<ByteString>,
        properties: Properties,
    ) -> Result<PacketId, ClientError> {
        if self.conn != Conn::Connected {
            return Err(ClientError::NotConnected);
        }
        if filters.is_empty() {
            return Err(ClientError::NoFilters);
        }
        let pid = self.alloc_pid()?;
        self.pending_unsubscribe.insert(pid);
        self.send(Packet::Unsubscribe(Unsubscribe {
            pid,
            filters,
            properties,
        }));
        self.arm();
        Ok(pid)
    }

    /// Sends DISCONNECT (normal disconnection) and asks for the transport to be closed.
    pub fn disconnect(&mut self) {
        if self.conn != Conn::Disconnected {
            self.send(Packet::Disconnect(Disconnect::default()));
        }
        self.close(CloseReason::ClientDisconnect);
    }

    fn send(&mut self, packet: Packet) {
        self.last_sent = self.now;
        self.actions.push_back(Action::Send(packet));
    }

    /// Queues an [`Action::ArmTimer`] when the deadline changed.
    fn arm(&mut self) {
        let deadline = self.next_deadline();
        if deadline != self.armed {
            self.armed = deadline;
            if let Some(at) = deadline {
                self.actions.push_back(Action::ArmTimer { at });
            }
        }
    }

    fn close(&mut self, reason: CloseReason) {
        self.conn = Conn::Disconnected;
        self.armed = None;
        self.fail_pending_requests();
        self.actions.push_back(Action::Close { reason });
    }

    fn protocol_error(&mut self, code: ReasonCode) {
        if self.protocol().is_v5() && self.conn != Conn::Disconnected {
            self.send(Packet::Disconnect(Disconnect::new(code)));
        }
        self.close(CloseReason::ProtocolError(code));
    }

    fn fail_pending_requests(&mut self) {
        let mut subs: Vec<_> = self.pending_subscribe.drain().collect();
        subs.sort_unstable();
        for pid in subs {
            self.pids_in_use.remove(&pid);
            self.actions.push_back(Action::SubscribeComplete {
                pid,
                result: Err(ClientError::ConnectionLost),
            });
        }
        let mut unsubs: Vec<_> = self.pending_unsubscribe.drain().collect();
        unsubs.sort_unstable();
        for pid in unsubs {
            self.pids_in_use.remove(&pid);
            self.actions.push_back(Action::UnsubscribeComplete {
                pid,
                result: Err(ClientError::ConnectionLost),
            });
        }
    }

    fn alloc_pid(&mut self) -> Result<PacketId, ClientError> {
        if self.pids_in_use.len() >= usize::from(u16::MAX) {
            return Err(ClientError::PacketIdsExhausted);
        }
        loop {
            let candidate = PacketId::new(self.next_pid);
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if let Some(pid) = candidate
                && self.pids_in_use.insert(pid)
            {
                return Ok(pid);
            }
        }
    }

    fn release_pid(&mut self, pid: PacketId) {
        self.pids_in_use.remove(&pid);
    }

    /// Sends queued QoS 1/2 publications while the server's Receive Maximum allows.
    fn flush_queue(&mut self) {
        if self.conn != Conn::Connected {
            return;
        }
        while self.outgoing.len() < usize::from(self.limits.receive_maximum) {
            let Some(publish) = self.queued.pop_front() else {
                break;
            };
            let Some(pid) = publish.qos_pid.pid() else {
                continue;
            };
            let stage = if publish.qos() == QoS::AtLeastOnce {
                Stage::Qos1Sent
            } else {
                Stage::Qos2Sent
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            self.outgoing.insert(
                pid,
                Outgoing {
                    seq,
                    stage,
                    publish: publish.clone(),
                },
            );
            self.send_publish(publish);
        }
    }

    /// Sends a PUBLISH, replacing its topic by an alias where the server allows aliases.
    fn send_publish(&mut self, mut publish: Publish) {
        if self.protocol().is_v5()
            && self.limits.topic_alias_maximum > 0
            && publish.properties.topic_alias.is_none()
            && !publish.topic.is_empty()
        {
            if let Some(&alias) = self.alias_out.get(&publish.topic) {
                publish.topic = ByteString::new();
                publish.properties.topic_alias = Some(alias);
            } else if self.alias_out.len() < usize::from(self.limits.topic_alias_maximum) {
                let alias = self.alias_out.len() as u16 + 1;
                self.alias_out.insert(publish.topic.clone(), alias);
                publish.properties.topic_alias = Some(alias);
            }
        }
        self.send(Packet::Publish(publish));
    }

    /// AUTH during CONNECT: the next step of enhanced authentication.
    fn on_auth(&mut self, auth: Auth) {
        let Some(state) = &mut self.auth else {
            return self.protocol_error(ReasonCode::ProtocolError);
        };
        let method = ByteString::from(state.method());
        if auth.code != ReasonCode::ContinueAuthentication
            || auth.properties.authentication_method.as_ref() != Some(&method)
        {
            return self.protocol_error(ReasonCode::ProtocolError);
        }
        let data = auth.properties.authentication_data.unwrap_or_default();
        match state.step(&data) {
            Ok(answer) => {
                let mut reply = Auth {
                    code: ReasonCode::ContinueAuthentication,
                    properties: Properties::default(),
                };
                reply.properties.authentication_method = Some(method);
                reply.properties.authentication_data = Some(answer);
                self.send(Packet::Auth(reply));
            }
            Err(code) => self.auth_failed(code),
        }
    }

    /// Enhanced authentication failed on this side: DISCONNECT (the server is told why), then
    /// close without ever reporting `Connected`.
    fn auth_failed(&mut self, code: ReasonCode) {
        self.send(Packet::Disconnect(Disconnect::new(code)));
        self.close(CloseReason::AuthFailed(code));
    }

    fn on_connack(&mut self, ack: ConnAck) {
        if ack.code.is_error() {
            self.close(CloseReason::Refused(ack.code));
            return;
        }
        if self.protocol().is_v5()
            && let Some(auth) = &mut self.auth
            && let Err(code) = auth.finish(ack.properties.authentication_data.as_deref())
        {
            self.auth_failed(code);
            return;
        }
        let p = &ack.properties;
        let defaults = ServerLimits::default();
        self.limits = ServerLimits {
            receive_maximum: p.receive_maximum.unwrap_or(defaults.receive_maximum),
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            maximum_qos: p.maximum_qos.unwrap_or(defaults.maximum_qos),
            retain_available: p.retain_available.unwrap_or(true),
            maximum_packet_size: p
                .maximum_packet_size
                .unwrap_or(defaults.maximum_packet_size),
        };
        if let Some(ka) = p.server_keep_alive {
            self.keep_alive = Duration::from_secs(u64::from(ka));
        }
        if let Some(id) = &p.assigned_client_identifier {
            self.connect.client_id = id.clone();
        }
        self.conn = Conn::Connected;
        self.actions.push_back(Action::Connected {
            session_present: ack.session_present,
        });
        if ack.session_present {
            self.retransmit();
        } else {
            self.reset_session();
        }
        self.flush_queue();
    }

    /// Session resumed: resend unacknowledged PUBLISH with DUP and PUBREL, in the original
    /// order [MQTT-4.4.0-1].
    fn retransmit(&mut self) {
        let mut inflight: Vec<_> = self.outgoing.values().cloned().collect();
        inflight.sort_unstable_by_key(|o| o.seq);
        for o in inflight {
            match o.stage {
                Stage::Qos1Sent | Stage::Qos2Sent => {
                    let mut publish = o.publish;
                    publish.dup = true;
                    self.send_publish(publish);
                }
                Stage::Released => {
                    if let Some(pid) = o.publish.pid() {
                        self.send(Packet::PubRel(PubRel::new(pid)));
                    }
                }
            }
        }
    }

    /// Session not resumed: the server forgot our packet ids. Publications the server had not
    /// acknowledged are sent again as new messages; those past PUBREC were already accepted by
    /// the server and complete successfully. Incoming QoS 2 state is dropped.
    fn reset_session(&mut self) {
        let mut inflight: Vec<_> = self.outgoing.drain().map(|(_, o)| o).collect();
        inflight.sort_unstable_by_key(|o| core::cmp::Reverse(o.seq));
        for o in inflight {
            match o.stage {
                Stage::Qos1Sent | Stage::Qos2Sent => self.queued.push_front(o.publish),
                Stage::Released => {
                    if let Some(pid) = o.publish.pid() {
                        self.release_pid(pid);
                        self.actions.push_back(Action::PublishComplete {
                            pid,
                            result: Ok(()),
                        });
                    }
                }
            }
        }
        self.incoming_qos2.clear();
    }

    fn on_packet(&mut self, packet: Packet) {
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(a) => self.on_ack(a.pid, Stage::Qos1Sent, a.code),
            Packet::PubRec(a) => self.on_ack(a.pid, Stage::Qos2Sent, a.code),
            Packet::PubComp(a) => self.on_ack(a.pid, Stage::Released, a.code),
            Packet::PubRel(r) => {
                let mut comp = PubComp::new(r.pid);
                if !self.incoming_qos2.remove(&r.pid) && self.protocol().is_v5() {
                    comp.code = ReasonCode::PacketIdentifierNotFound;
                }
                self.send(Packet::PubComp(comp));
            }
            Packet::SubAck(s) => {
                if self.pending_subscribe.remove(&s.pid) {
                    self.release_pid(s.pid);
                    self.actions.push_back(Action::SubscribeComplete {
                        pid: s.pid,
                        result: Ok(s.codes),
                    });
                }
            }
            Packet::UnsubAck(u) => {
                if self.pending_unsubscribe.remove(&u.pid) {
                    self.release_pid(u.pid);
                    self.actions.push_back(Action::UnsubscribeComplete {
                        pid: u.pid,
                        result: Ok(u.codes),
                    });
                }
            }
            Packet::PingResp => {}
            Packet::Disconnect(d) => {
                self.conn = Conn::Disconnected;
                self.close(CloseReason::ServerDisconnect(d.code));
            }
            // AUTH re-authentication is not driven by this state machine.
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::Auth(_) => self.protocol_error(ReasonCode::ProtocolError),
        }
    }

    fn on_publish(&mut self, mut p: Publish) {
        if let Some(alias) = p.properties.topic_alias.take() {
            let max = self.connect.properties.topic_alias_maximum.unwrap_or(0);
            if alias > max {
                self.protocol_error(ReasonCode::TopicAliasInvalid);
                return;
            }
            if p.topic.is_empty() {
                match self.alias_in.get(&alias) {
                    Some(topic) => p.topic = topic.clone(),
                    None => {
                        self.protocol_error(ReasonCode::ProtocolError);
                        return;
                    }
                }
            } else {
                self.alias_in.insert(alias, p.topic.clone());
            }
        }
        match p.qos_pid {
            QosPid::AtMostOnce => self.actions.push_back(Action::Deliver(p)),
            QosPid::AtLeastOnce(pid) => {
                self.actions.push_back(Action::Deliver(p));
                self.send(Packet::PubAck(PubAck::new(pid)));
            }
            QosPid::ExactlyOnce(pid) => {
                if !self.incoming_qos2.contains(&pid) {
                    let max = self.connect.properties.receive_maximum.unwrap_or(u16::MAX);
                    if self.incoming_qos2.len() >= usize::from(max) {
                        self.protocol_error(ReasonCode::ReceiveMaximumExceeded);
                        return;
                    }
                    self.incoming_qos2.insert(pid);
                    self.actions.push_back(Action::Deliver(p));
                }
                self.send(Packet::PubRec(PubRec::new(pid)));
            }
        }
    }

    fn on_ack(&mut self, pid: PacketId, stage: Stage, code: ReasonCode) {
        let Some(o) = self.outgoing.get_mut(&pid) else {
            return;
        };
        if o.stage != stage {
            if stage == Stage::Qos2Sent && o.stage == Stage::Released {
                // A repeated PUBREC: answer with PUBREL again.
                self.send(Packet::PubRel(PubRel::new(pid)));
            }
            return;
        }
        if stage == Stage::Qos2Sent && !code.is_error() {
            o.stage = Stage::Released;
            self.send(Packet::PubRel(PubRel::new(pid)));
            return;
        }
        self.outgoing.remove(&pid);
        self.release_pid(pid);
        let result = if code.is_error() { Err(code) } else { Ok(()) };
        self.actions
            .push_back(Action::PublishComplete { pid, result });
        self.flush_queue();
    }
}
