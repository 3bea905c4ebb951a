//! CONNECT: the checks before and after authentication, the terms the session runs under
//! (client identifier, expiry, keep alive, will, windows) and the CONNACK that opens a
//! [`ServerConn`]. Authentication itself (slow on purpose) and attaching to the session (which
//! may wait for a taken-over connection) are the driver's; everything here is synchronous.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_mqtt::{
    ByteString, Bytes, BytesMut, ConnAck, Connect, Decoder, Packet, ProtocolVersion, ReasonCode,
    topic,
};

use super::{Link, Outbox, Peer, ServerConn};
use crate::broker::router::Attached;
use crate::broker::session::{Message, Stage};
use crate::broker::{BrokerConfig, ClientInfo, Transport};
use crate::security::{Login, TokenBucket};

/// The broker limits one connection enforces (a copy, so the connection never reads the
/// broker's configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_packet_size: u32,
    pub(crate) max_client_id_len: usize,
    pub(crate) max_topic_levels: usize,
    pub(crate) max_keepalive: u16,
    pub(crate) receive_maximum: u16,
    pub(crate) max_inflight: u16,
    pub(crate) topic_alias_maximum: u16,
    pub(crate) max_session_expiry: u32,
    /// `[limits] max_subscriptions` (0: none); set by the driver from the security limits.
    pub(crate) max_subscriptions: usize,
}

impl From<&BrokerConfig> for Limits {
    fn from(c: &BrokerConfig) -> Self {
        Self {
            max_packet_size: c.max_packet_size,
            max_client_id_len: c.max_client_id_len,
            max_topic_levels: c.max_topic_levels,
            max_keepalive: c.max_keepalive,
            receive_maximum: c.receive_maximum,
            max_inflight: c.max_inflight,
            topic_alias_maximum: c.topic_alias_maximum,
            max_session_expiry: c.max_session_expiry,
            max_subscriptions: 0,
        }
    }
}

/// A refused CONNECT: the CONNACK code and why (v5: the reason string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: ReasonCode,
    pub(crate) why: &'static str,
}

impl Refusal {
    const fn new(code: ReasonCode, why: &'static str) -> Self {
        Self { code, why }
    }

    /// The CONNACK that says so, encoded for `version`.
    pub(crate) fn connack(&self, version: ProtocolVersion) -> BytesMut {
        let mut ack = ConnAck::new(false, self.code);
        if version.is_v5() {
            ack.properties.reason_string = Some(self.why.into());
        }
        let mut out = BytesMut::new();
        let _ = Packet::ConnAck(ack).encode(version, &mut out);
        out
    }
}

/// Checks that need no authentication. `has_auth_exchange`: enhanced authentication ran and
/// produced CONNACK data.
pub(crate) fn check(
    connect: &Connect,
    limits: &Limits,
    has_auth_exchange: bool,
) -> Result<(), Refusal> {
    if connect.client_id.len() > limits.max_client_id_len {
        return Err(Refusal::new(
            ReasonCode::ClientIdentifierNotValid,
            "client identifier too long",
        ));
    }
    if connect.protocol.is_v5()
        && connect.properties.authentication_method.is_some()
        && !has_auth_exchange
    {
        return Err(Refusal::new(
            ReasonCode::BadAuthenticationMethod,
            "enhanced authentication is not supported",
        ));
    }
    if let Some(will) = &connect.will
        && (topic::validate_topic_name(&will.topic).is_err()
            || will.topic.split('/').count() > limits.max_topic_levels)
    {
        return Err(Refusal::new(
            ReasonCode::TopicNameInvalid,
            "invalid will topic",
        ));
    }
    if connect.client_id.is_empty() && !connect.protocol.is_v5() && !connect.clean_start {
        // [MQTT-3.1.3-8]: a 3.1.1 client with an empty id must ask for a clean session.
        return Err(Refusal::new(
            ReasonCode::ClientIdentifierNotValid,
            "empty client identifier needs clean session",
        ));
    }
    Ok(())
}

/// What the session runs under, decided from CONNECT before attaching.
#[derive(Debug)]
pub(crate) struct Terms {
    pub(crate) client_id: ByteString,
    /// The identifier the server assigned (v5 CONNACK tells it).
    assigned: Option<ByteString>,
    /// Session expiry in force, and the one the client asked for.
    pub(crate) expiry: u32,
    requested_expiry: u32,
    keep_alive: u16,
    /// v5: the keep alive the server imposes, when it differs.
    server_keep_alive: Option<u16>,
    pub(crate) will: Option<Box<(Message, u32)>>,
    pub(crate) clean_start: bool,
}

/// The terms of a CONNECT that passed [`check`] and authentication, or a refusal: the will
/// must be one the client may publish. An empty client identifier gets one from the router.
pub(crate) fn terms(
    link: &Link,
    connect: &Connect,
    login: &Login,
    peer: SocketAddr,
    transport: Transport,
    now: Instant,
) -> Result<Terms, Refusal> {
    let limits = &link.limits;
    let v5 = connect.protocol.is_v5();
    if let Some(will) = &connect.will {
        let info = ClientInfo {
            client_id: &connect.client_id,
            username: connect.username.as_deref(),
            peer,
            transport,
            identity: login.identity(),
        };
        if !link.authorizer.may_publish(&info, &will.topic) {
            return Err(Refusal::new(
                ReasonCode::NotAuthorized,
                "not authorized to publish the will",
            ));
        }
    }
    let (client_id, assigned) = if connect.client_id.is_empty() {
        let id = link.router.assign_client_id();
        (id.clone(), Some(id))
    } else {
        // Copied: a slice would keep the whole CONNECT read buffer alive for the session.
        (ByteString::from(&*connect.client_id), None)
    };
    // Session expiry: v5 property (default 0), 3.1.1 clean session 0 = never.
    let requested_expiry = if v5 {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        u32::MAX
    };
    let expiry = requested_expiry.min(limits.max_session_expiry);
    // Keep alive: capped by max_keepalive; a v5 client asking 0 or more is told the cap.
    let mut server_keep_alive = None;
    let keep_alive = if connect.keep_alive > limits.max_keepalive
        || (v5 && connect.keep_alive == 0 && limits.max_keepalive != u16::MAX)
    {
        if v5 {
            server_keep_alive = Some(limits.max_keepalive);
        }
        limits.max_keepalive
    } else {
        connect.keep_alive
    };
    let will = connect.will.as_ref().map(|w| {
        let mut properties = w.properties.clone();
        let delay = properties.will_delay_interval.take().unwrap_or(0);
        let expires_at = properties
            .message_expiry_interval
            .map(|s| now + Duration::from_secs(s.into()));
        let msg = Message {
            topic: ByteString::from(&*w.topic),
            payload: Bytes::copy_from_slice(&w.payload),
            qos: w.qos,
            retain: w.retain,
            properties,
            expires_at,
            origin: 0,
        };
        Box::new((msg, delay))
    });
    Ok(Terms {
        client_id,
        assigned,
        expiry,
        requested_expiry,
        keep_alive,
        server_keep_alive,
        will,
        clean_start: connect.clean_start,
    })
}

/// How the client came in and who it proved to be.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub(crate) addr: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) login: Arc<Login>,
    /// The user name proven by SCRAM or a client certificate, else CONNECT's.
    pub(crate) username: Option<ByteString>,
    /// Authentication Method and Data for the CONNACK (the SCRAM server-final-message).
    pub(crate) auth_data: Option<(ByteString, Bytes)>,
    /// The `[limits] publish_rate` bucket, if any.
    pub(crate) publish_bucket: Option<TokenBucket>,
    /// The wall clock now, in Unix seconds (for a token's expiry).
    pub(crate) unix_now: u64,
    /// The decoder that read the CONNECT (it knows the protocol version now).
    pub(crate) decoder: Decoder,
}

impl ServerConn {
    /// Opens the connection on its attached session: CONNACK (held back until the session's
    /// opening is committed), then the unacknowledged messages of a resumed session
    /// ([MQTT-4.4.0-1]: PUBLISH again with DUP, PUBREL again).
    pub(crate) fn open(
        link: Link,
        connect: &Connect,
        terms: Terms,
        attached: Attached,
        arrival: Arrival,
        now: Instant,
    ) -> Self {
        let limits = link.limits;
        let version = connect.protocol;
        let v5 = version.is_v5();
        let mut ack = ConnAck::new(attached.session_present, ReasonCode::Success);
        if v5 {
            let p = &mut ack.properties;
            p.receive_maximum = Some(limits.receive_maximum.max(1));
            p.topic_alias_maximum = Some(limits.topic_alias_maximum);
            p.maximum_packet_size = Some(limits.max_packet_size);
            p.assigned_client_identifier = terms.assigned;
            if let Some((method, data)) = arrival.auth_data {
                p.authentication_method = Some(method);
                p.authentication_data = Some(data);
            }
            p.server_keep_alive = terms.server_keep_alive;
            if terms.expiry != terms.requested_expiry {
                p.session_expiry_interval = Some(terms.expiry);
            }
        }
        let client_receive_max = if v5 {
            connect.properties.receive_maximum.unwrap_or(u16::MAX)
        } else {
            u16::MAX
        };
        let login_expires = arrival
            .login
            .identity()
            .expires()
            .map(|at| now + Duration::from_secs(at.saturating_sub(arrival.unix_now)));
        let mut conn = Self {
            link,
            session: attached.session,
            generation: attached.generation,
            kick: attached.kick,
            version,
            peer: Peer {
                client_id: terms.client_id,
                username: arrival.username,
                addr: arrival.addr,
                transport: arrival.transport,
                login: arrival.login,
            },
            decoder: arrival.decoder,
            will: terms.will,
            keep_alive: terms.keep_alive,
            last_heard: now,
            login_expires,
            expiry: terms.expiry,
            out_window: usize::from(client_receive_max.min(limits.max_inflight).max(1)),
            client_max_packet: connect
                .properties
                .maximum_packet_size
                .map_or(usize::MAX, |n| n as usize),
            alias_out: Default::default(),
            alias_out_max: if v5 {
                connect.properties.topic_alias_maximum.unwrap_or(0)
            } else {
                0
            },
            alias_in: Default::default(),
            out: Outbox::default(),
            counters: Default::default(),
            publish_bucket: arrival.publish_bucket,
            closing: None,
        };
        conn.hold(attached.ticket);
        conn.send(Packet::ConnAck(ack));
        conn.resend_inflight(now);
        tracing::debug!(peer = %conn.peer.addr, client_id = %conn.peer.client_id, ?version, session_present = attached.session_present, "client connected");
        conn
    }

    /// [MQTT-4.4.0-1]: on a resumed session, unacknowledged PUBLISHes are sent again with DUP,
    /// and PUBRELs again.
    fn resend_inflight(&mut self, now: Instant) {
        let session = Arc::clone(&self.session);
        let state = session.lock();
        for flight in &state.outgoing {
            match flight.stage {
                Stage::Published => {
                    let _ = self.encode_delivery(&flight.delivery, Some(flight.pid), true, now);
                }
                Stage::Released => {
                    self.send(Packet::PubRel(switchboard_mqtt::PubRel::new(flight.pid)))
                }
            }
        }
    }
}
