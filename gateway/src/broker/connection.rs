//! One client connection: CONNECT handshake, then a loop that reads and handles packets,
//! drains the session queue into the write buffer and writes, until the connection ends.
//!
//! The task owns its stream (split into halves), a read buffer that starts small and grows
//! only while the client sends large bursts, and a write buffer into which everything ready is
//! encoded before a single write (write coalescing). Nothing here is shared but the
//! [`Session`], whose lock is taken for short sections only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_mqtt::{
    ByteString, Bytes, BytesMut, ConnAck, Connect, DecodeError, Decoder, Disconnect, Packet,
    PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS, QosPid, ReasonCode,
    RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe, topic,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::session::{Delivery, Kick, Kicked, Message, OutFlight, Session, Stage};
use super::trie::{Route, Subscriber};
use super::{Broker, ClientInfo, Durable, Metrics, Ticket, Transport};
use crate::security::{
    Authenticator as _, ConnectInfo, ConnectionMeta, Login, Revoked, TokenBucket, token::unix_now,
};

/// First read buffer capacity: an idle connection costs no more than this.
const READ_MIN: usize = 512;
/// Largest read chunk.
const READ_MAX: usize = 64 * 1024;
/// Stop draining the session queue (and reading) while this much is waiting to be written.
const WRITE_HIGH: usize = 64 * 1024;
/// Time given to a last DISCONNECT to reach the client.
const GOODBYE: Duration = Duration::from_secs(1);

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT from the client; `will` for v5 reason 0x04.
    Normal { will: bool },
    /// Anything else: I/O error, EOF, protocol error, keep alive, takeover, shutdown.
    Abnormal,
}

/// A fatal protocol error: the code for the v5 DISCONNECT and a log message.
#[derive(Debug)]
struct Fatal {
    code: ReasonCode,
    why: String,
}

impl Fatal {
    fn new(code: ReasonCode, why: impl Into<String>) -> Self {
        Self {
            code,
            why: why.into(),
        }
    }
}

impl From<DecodeError> for Fatal {
    fn from(err: DecodeError) -> Self {
        Self::new(err.reason_code(), err.to_string())
    }
}

/// Serves one connection. See [`Broker::serve_connection`].
pub(super) async fn serve<S>(
    broker: &Broker,
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    meta: ConnectionMeta,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Abuse limits first: nothing is read from a source over its connection limit, and only
    // `max_handshakes` connections may sit before their CONNACK at once (slow-loris).
    let Some(_address_slot) = broker.security().enter_address(peer.ip()) else {
        tracing::debug!(%peer, "per-address connection limit reached, closing");
        return;
    };
    let Some(handshake) = broker.security().try_handshake() else {
        tracing::debug!(%peer, "too many connections in CONNECT, closing");
        return;
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let config = broker.config();
    let mut decoder = Decoder::new(config.max_packet_size);
    let mut rbuf = BytesMut::new();
    let deadline = Duration::from_secs(config.connect_timeout);
    let first = tokio::select! {
        () = shutdown.cancelled() => return,
        r = Box::pin(tokio::time::timeout(deadline, read_connect(broker, &mut rd, &mut decoder, &mut rbuf))) => r,
    };
    let connect = match first {
        Err(_) => {
            tracing::debug!(%peer, "no CONNECT before the deadline, closing");
            return;
        }
        Ok(Err(ConnectError::Io)) => return,
        Ok(Err(ConnectError::Decode(err))) => {
            tracing::debug!(%peer, "bad CONNECT: {err}");
            if matches!(
                err,
                DecodeError::UnsupportedProtocol { .. } | DecodeError::InvalidProtocolName
            ) {
                // [MQTT-3.1.2-2]: CONNACK 0x01 (unacceptable protocol level), then close.
                // Flushed and shut down: TLS and WebSocket streams send only on flush.
                let _ = wr.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
                let _ = tokio::time::timeout(GOODBYE, wr.shutdown()).await;
            }
            return;
        }
        Ok(Ok(connect)) => connect,
    };
    // MQTT 5 enhanced authentication (the AUTH exchange, bounded by another `connect_timeout`)
    // and the TLS client certificate's name.
    let proven = tokio::select! {
        () = shutdown.cancelled() => return,
        r = Box::pin(tokio::time::timeout(deadline, super::enhanced_auth::run(broker, &connect, &meta, peer, &mut rd, &mut wr, &mut decoder, &mut rbuf))) => r,
    };
    let Ok(Some(proven)) = proven else {
        let _ = tokio::time::timeout(GOODBYE, wr.shutdown()).await;
        return;
    };
    // One-shot futures are boxed so their state does not stay in every idle connection's task.
    let accepted = Box::pin(Conn::accept(
        broker, connect, peer, transport, &meta, proven, &mut wr,
    ))
    .await;
    drop(handshake);
    let Some(mut conn) = accepted else {
        let _ = tokio::time::timeout(GOODBYE, wr.shutdown()).await;
        return;
    };
    Metrics::add(&broker.metrics().clients_connected, 1);
    broker.client_up(
        &conn.client_id,
        conn.generation,
        peer,
        transport,
        conn.version,
        &conn.login,
        &conn.kick,
    );
    let end = conn.run(&mut rd, &mut wr, rbuf, decoder, &shutdown).await;
    broker.client_down(&conn.client_id, conn.generation);
    Metrics::sub(&broker.metrics().clients_connected, 1);
    conn.finish(end);
    let _ = tokio::time::timeout(GOODBYE, wr.shutdown()).await;
}

#[derive(Debug)]
enum ConnectError {
    Io,
    Decode(DecodeError),
}

/// Runs [`crate::security::Authenticator::authenticate`] on the blocking pool (password hashes
/// are slow on purpose); a successful login clears the source's back-off.
async fn authenticate(
    broker: &Broker,
    connect: &Connect,
    peer: SocketAddr,
    transport: Transport,
    meta: &ConnectionMeta,
) -> Result<Login, ReasonCode> {
    let security = Arc::clone(broker.security());
    let client_id = connect.client_id.clone();
    let username = connect.username.clone();
    let password = connect.password.clone();
    let meta = meta.clone();
    let result = tokio::task::spawn_blocking(move || {
        security.authenticate(&ConnectInfo {
            client_id: &client_id,
            username: username.as_deref(),
            password: password.as_deref(),
            peer,
            transport,
            origin: meta.origin.as_deref(),
            url_token: meta.token.as_deref(),
        })
    })
    .await
    .unwrap_or(Err(ReasonCode::ServerUnavailable));
    if result.is_ok() {
        broker.security().login_succeeded(peer.ip());
    }
    result
}

/// Reads until the first packet is decoded; it must be CONNECT ([MQTT-3.1.0-1]).
async fn read_connect<R: AsyncRead + Unpin>(
    broker: &Broker,
    rd: &mut R,
    decoder: &mut Decoder,
    rbuf: &mut BytesMut,
) -> Result<Box<Connect>, ConnectError> {
    loop {
        match decoder.decode(rbuf) {
            Ok(Some(Packet::Connect(connect))) => return Ok(connect),
            Ok(Some(other)) => {
                return Err(ConnectError::Decode(DecodeError::FirstPacketNotConnect(
                    other.packet_type(),
                )));
            }
            Ok(None) => {}
            Err(err) => return Err(ConnectError::Decode(err)),
        }
        rbuf.reserve(READ_MIN);
        match rd.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Err(ConnectError::Io),
            Ok(n) => Metrics::add(&broker.metrics().bytes_received, n as u64),
        }
    }
}

/// Writes some of `buf` (`Some(n)`), or flushes when it is empty (`None`). Cancel safe: a
/// write either happened (and is reported) or did not start.
async fn write_or_flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
) -> std::io::Result<Option<usize>> {
    if buf.is_empty() {
        wr.flush().await.map(|()| None)
    } else {
        wr.write(buf).await.map(Some)
    }
}

/// The state of one connected client.
#[derive(Debug)]
struct Conn {
    broker: Broker,
    session: Arc<Session>,
    generation: u64,
    /// Makes this connection leave (takeover, HTTP API, revoked login), saying why.
    kick: Kick,
    version: ProtocolVersion,
    client_id: ByteString,
    username: Option<ByteString>,
    peer: SocketAddr,
    transport: Transport,
    /// The will and its delay (v5), dropped on a normal DISCONNECT.
    will: Option<Box<(Message, u32)>>,
    /// Keep alive in force (0: none).
    keep_alive: u16,
    /// Session expiry requested at CONNECT (v5 DISCONNECT may change it, not from 0).
    expiry: u32,
    /// Most outgoing QoS 1/2 messages in flight: min(client Receive Maximum, max_inflight).
    out_window: usize,
    /// The client's Maximum Packet Size (v5); larger PUBLISHes are dropped for this client.
    client_max_packet: usize,
    /// Outgoing topic aliases (v5): topic to alias, up to the client's Topic Alias Maximum.
    alias_out: HashMap<ByteString, u16>,
    alias_out_max: u16,
    /// Incoming topic aliases (v5): alias to topic.
    alias_in: HashMap<u16, ByteString>,
    /// Encoded packets waiting for the socket.
    wbuf: BytesMut,
    /// Scratch vector for routing this client's publications.
    routes: Vec<Route>,
    /// PUBLISH packets sent and received since the counters were last added to the broker's
    /// metrics (batched to keep shared cache lines quiet).
    sent: u64,
    received: u64,
    bytes_sent: u64,
    bytes_received: u64,
    /// `sent` and `received` split by QoS (same batching).
    sent_qos: [u64; 3],
    received_qos: [u64; 3],
    /// Who the client authenticated as (token scope, ACL user) and what proved it; shared with
    /// the broker's table of live clients, which re-checks it after a security reload.
    login: Arc<Login>,
    /// The `[limits] publish_rate` token bucket; `None`: no limit.
    publish_bucket: Option<TokenBucket>,
    /// Highest store ticket of the changes behind what `wbuf` holds (0: none): the buffer is
    /// written only once the store has committed it ("nothing acknowledged is ever lost").
    commit: Ticket,
}

impl Conn {
    /// Validates CONNECT, attaches the session and writes CONNACK (plus any redeliveries).
    /// `None` when the connection was refused (CONNACK with an error already sent).
    async fn accept<W: AsyncWrite + Unpin>(
        broker: &Broker,
        connect: Box<Connect>,
        peer: SocketAddr,
        transport: Transport,
        meta: &ConnectionMeta,
        proven: super::enhanced_auth::Proven,
        wr: &mut W,
    ) -> Option<Self> {
        let config = broker.config();
        let version = connect.protocol;
        let v5 = version.is_v5();
        let mut refuse = async |code: ReasonCode, why: &str| {
            tracing::debug!(%peer, client_id = %connect.client_id, "CONNECT refused ({code:?}): {why}");
            let mut ack = ConnAck::new(false, code);
            if v5 {
                ack.properties.reason_string = Some(why.into());
            }
            let mut out = BytesMut::new();
            if Packet::ConnAck(ack).encode(version, &mut out).is_ok() {
                // Flushed: TLS and WebSocket streams send only on flush.
                let _ = tokio::time::timeout(GOODBYE, async {
                    wr.write_all(&out).await?;
                    wr.flush().await
                })
                .await;
            }
        };
        if connect.client_id.len() > config.max_client_id_len {
            refuse(
                ReasonCode::ClientIdentifierNotValid,
                "client identifier too long",
            )
            .await;
            return None;
        }
        if v5 && connect.properties.authentication_method.is_some() && proven.connack.is_none() {
            refuse(
                ReasonCode::BadAuthenticationMethod,
                "enhanced authentication is not supported",
            )
            .await;
            return None;
        }
        if let Some(will) = &connect.will
            && (topic::validate_topic_name(&will.topic).is_err()
                || will.topic.split('/').count() > config.max_topic_levels)
        {
            refuse(ReasonCode::TopicNameInvalid, "invalid will topic").await;
            return None;
        }
        // A user name proven by SCRAM or a client certificate needs no password.
        let proven_user = proven.username.clone().map(Login::proven).ok_or(());
        let authenticated = match proven_user {
            Ok(login) => Ok(login),
            Err(()) => authenticate(broker, &connect, peer, transport, meta).await,
        };
        let login = match authenticated {
            Ok(login) => Arc::new(login),
            Err(code) => {
                // Back-off per source address: each consecutive failure waits longer before
                // its refusal, so guessing passwords gets slow.
                let delay = broker.security().login_failed(peer.ip());
                tokio::time::sleep(delay).await;
                refuse(code, "not authorized").await;
                return None;
            }
        };
        if let Some(will) = &connect.will {
            let info = ClientInfo {
                client_id: &connect.client_id,
                username: connect.username.as_deref(),
                peer,
                transport,
                identity: login.identity(),
            };
            if !broker.authorizer().may_publish(&info, &will.topic) {
                refuse(
                    ReasonCode::NotAuthorized,
                    "not authorized to publish the will",
                )
                .await;
                return None;
            }
        }
        let mut assigned = None;
        let client_id = if connect.client_id.is_empty() {
            // [MQTT-3.1.3-8]: a 3.1.1 client with an empty id must ask for a clean session.
            if !v5 && !connect.clean_start {
                refuse(
                    ReasonCode::ClientIdentifierNotValid,
                    "empty client identifier needs clean session",
                )
                .await;
                return None;
            }
            let id = broker.assign_client_id();
            assigned = Some(id.clone());
            id
        } else {
            // Copied: a slice would keep the whole CONNECT read buffer alive for the session.
            ByteString::from(&*connect.client_id)
        };

        // Session expiry: v5 property (default 0), 3.1.1 clean session 0 = never.
        let requested_expiry = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        let expiry = requested_expiry.min(config.max_session_expiry);
        // Keep alive: capped by max_keepalive; a v5 client asking 0 or more is told the cap.
        let mut server_keep_alive = None;
        let keep_alive = if connect.keep_alive > config.max_keepalive
            || (v5 && connect.keep_alive == 0 && config.max_keepalive != u16::MAX)
        {
            if v5 {
                server_keep_alive = Some(config.max_keepalive);
            }
            config.max_keepalive
        } else {
            connect.keep_alive
        };

        let will = connect.will.as_ref().map(|w| {
            let mut properties = w.properties.clone();
            let delay = properties.will_delay_interval.take().unwrap_or(0);
            let expires_at = properties
                .message_expiry_interval
                .map(|s| Instant::now() + Duration::from_secs(s.into()));
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

        let attached = broker.attach(&client_id, connect.clean_start, expiry).await;
        let mut ack = ConnAck::new(attached.session_present, ReasonCode::Success);
        if v5 {
            let p = &mut ack.properties;
            p.receive_maximum = Some(config.receive_maximum.max(1));
            p.topic_alias_maximum = Some(config.topic_alias_maximum);
            p.maximum_packet_size = Some(config.max_packet_size);
            p.assigned_client_identifier = assigned;
            if let Some((method, data)) = proven.connack {
                p.authentication_method = Some(method);
                p.authentication_data = Some(data);
            }
            p.server_keep_alive = server_keep_alive;
            if expiry != requested_expiry {
                p.session_expiry_interval = Some(expiry);
            }
        }
        let client_receive_max = if v5 {
            connect.properties.receive_maximum.unwrap_or(u16::MAX)
        } else {
            u16::MAX
        };
        let mut conn = Self {
            broker: broker.clone(),
            session: attached.session,
            generation: attached.generation,
            kick: attached.kick,
            version,
            client_id,
            username: match proven.username {
                Some(user) => Some(ByteString::from(user)),
                None => connect.username.as_deref().map(ByteString::from),
            },
            peer,
            transport,
            will,
            keep_alive,
            expiry,
            out_window: usize::from(client_receive_max.min(config.max_inflight).max(1)),
            client_max_packet: connect
                .properties
                .maximum_packet_size
                .map_or(usize::MAX, |n| n as usize),
            alias_out: HashMap::new(),
            alias_out_max: if v5 {
                connect.properties.topic_alias_maximum.unwrap_or(0)
            } else {
                0
            },
            alias_in: HashMap::new(),
            wbuf: BytesMut::new(),
            routes: Vec::new(),
            sent: 0,
            received: 0,
            bytes_sent: 0,
            bytes_received: 0,
            sent_qos: [0; 3],
            received_qos: [0; 3],
            publish_bucket: broker.security().publish_bucket(),
            login,
            commit: attached.ticket,
        };
        conn.send(Packet::ConnAck(ack));
        conn.resend_inflight();
        tracing::debug!(%peer, client_id = %conn.client_id, ?version, session_present = attached.session_present, "client connected");
        Some(conn)
    }

    fn info(&self) -> ClientInfo<'_> {
        ClientInfo {
            client_id: &self.client_id,
            username: self.username.as_deref(),
            peer: self.peer,
            transport: self.transport,
            identity: self.login.identity(),
        }
    }

    fn v5(&self) -> bool {
        self.version.is_v5()
    }

    /// Whether this client may receive a message on `topic` (the broker's own `$SYS` included).
    fn may_receive(&self, topic: &str) -> bool {
        self.broker.authorizer().may_receive(&self.info(), topic)
    }

    /// Encodes a control packet into the write buffer.
    fn send(&mut self, packet: Packet) {
        if let Err(err) = packet.encode(self.version, &mut self.wbuf) {
            tracing::warn!(client_id = %self.client_id, "cannot encode {:?}: {err}", packet.packet_type());
        }
    }

    /// [MQTT-4.4.0-1]: on a resumed session, unacknowledged PUBLISHes are sent again with DUP,
    /// and PUBRELs again.
    fn resend_inflight(&mut self) {
        let session = Arc::clone(&self.session);
        let state = session.lock();
        for flight in &state.outgoing {
            match flight.stage {
                Stage::Published => {
                    let _ = self.encode_delivery(
                        &flight.delivery,
                        Some(flight.pid),
                        true,
                        Instant::now(),
                    );
                }
                Stage::Released => self.send(Packet::PubRel(PubRel::new(flight.pid))),
            }
        }
    }

    /// Encodes one delivery as PUBLISH; false when it was dropped (expired, or too large for
    /// the client).
    fn encode_delivery(
        &mut self,
        d: &Delivery,
        pid: Option<PacketId>,
        dup: bool,
        now: Instant,
    ) -> bool {
        let msg = &d.msg;
        let qos_pid = match (d.qos, pid) {
            (QoS::AtLeastOnce, Some(pid)) => QosPid::AtLeastOnce(pid),
            (QoS::ExactlyOnce, Some(pid)) => QosPid::ExactlyOnce(pid),
            _ => QosPid::AtMostOnce,
        };
        let mut publish = Publish {
            dup: dup && qos_pid != QosPid::AtMostOnce,
            qos_pid,
            retain: d.retain,
            topic: msg.topic.clone(),
            properties: Default::default(),
            payload: msg.payload.clone(),
        };
        if self.v5() {
            let p = &mut publish.properties;
            *p = msg.properties.clone();
            p.subscription_identifiers.clone_from(&d.sub_ids);
            if let Some(at) = msg.expires_at {
                // [MQTT-3.3.2-6]: the interval sent is what is left of it.
                let left = at.saturating_duration_since(now);
                if left.is_zero() && !dup {
                    return false;
                }
                p.message_expiry_interval = Some(left.as_secs_f64().ceil() as u32);
            }
            if self.alias_out_max > 0 {
                if let Some(&alias) = self.alias_out.get(&msg.topic) {
                    publish.topic = ByteString::default();
                    p.topic_alias = Some(alias);
                } else if self.alias_out.len() < usize::from(self.alias_out_max) {
                    let alias = self.alias_out.len() as u16 + 1;
                    p.topic_alias = Some(alias);
                    self.alias_out.insert(msg.topic.clone(), alias);
                }
            }
        }
        let packet = Packet::Publish(publish);
        // [MQTT-3.1.2-24]: never send a packet larger than the client's Maximum Packet Size.
        if packet.encoded_len(self.version) > self.client_max_packet {
            tracing::debug!(client_id = %self.client_id, topic = %msg.topic, "message larger than the client's maximum packet size dropped");
            return false;
        }
        match packet.encode(self.version, &mut self.wbuf) {
            Ok(()) => {
                self.sent += 1;
                self.sent_qos[d.qos as usize] += 1;
                true
            }
            Err(err) => {
                tracing::warn!(client_id = %self.client_id, "cannot encode PUBLISH: {err}");
                false
            }
        }
    }

    /// Moves queued deliveries into the write buffer, within the in-flight window.
    fn pump(&mut self) {
        if self.wbuf.len() >= WRITE_HIGH {
            return;
        }
        let session = Arc::clone(&self.session);
        let now = Instant::now();
        let mut dropped = 0;
        // Store keys of durable deliveries dropped here, forgotten once the lock is released.
        let mut forget = Vec::new();
        let broker = self.broker.clone();
        let store = broker.store();
        let mut state = session.lock();
        while self.wbuf.len() < WRITE_HIGH {
            let Some(front) = state.queue.front() else {
                break;
            };
            // Keep order: a QoS 1/2 message at the head waits for a free slot.
            if front.qos != QoS::AtMostOnce && state.outgoing.len() >= self.out_window {
                break;
            }
            let Some(d) = state.dequeue() else { break };
            if d.msg.expired(now) {
                dropped += 1;
                forget.push(d.store_id);
                continue;
            }
            // Read permission is checked per delivery (retained messages included), so a
            // wide subscription never leaks topics the client may not read.
            if !self.may_receive(&d.msg.topic) {
                forget.push(d.store_id);
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                if !self.encode_delivery(&d, None, false, now) {
                    dropped += 1;
                }
                continue;
            }
            let pid = state.next_pid();
            if self.encode_delivery(&d, Some(pid), false, now) {
                // A QoS 2 PUBLISH goes out only once its packet id is recorded: after a
                // restart it is sent again with the same id, which the client recognises.
                if d.store_id != 0 && d.qos == QoS::ExactlyOnce {
                    let ticket = store.message_sent(&self.client_id, d.store_id, pid);
                    self.commit = self.commit.max(ticket);
                }
                state.outgoing.push_back(OutFlight {
                    pid,
                    delivery: d,
                    stage: Stage::Published,
                });
            } else {
                dropped += 1;
                forget.push(d.store_id);
            }
        }
        drop(state);
        for id in forget.into_iter().filter(|id| *id != 0) {
            store.message_acked(&self.client_id, id);
        }
        self.flush_counters();
        if dropped > 0 {
            Metrics::add(&self.broker.metrics().messages_dropped, dropped);
        }
    }

    /// The connection loop. Returns how the connection ended.
    async fn run<R, W>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        mut rbuf: BytesMut,
        mut decoder: Decoder,
        shutdown: &CancellationToken,
    ) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if rbuf.is_empty() {
            // Release the CONNECT read buffer; see the idle strategy below.
            rbuf = BytesMut::new();
        }
        let keep_alive =
            (self.keep_alive > 0).then(|| Duration::from_millis(u64::from(self.keep_alive) * 1500));
        let timer = tokio::time::sleep(keep_alive.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(timer);
        // A token identity ends with its expiry: the connection is closed then (v5: DISCONNECT
        // 0x87 Not authorized).
        let token_expiry = self.login.identity().expires().map(|at| {
            let left = Duration::from_secs(at.saturating_sub(unix_now()));
            tokio::time::sleep(left.min(Duration::from_secs(86_400 * 365)))
        });
        let has_expiry = token_expiry.is_some();
        let expiry_timer =
            token_expiry.unwrap_or_else(|| tokio::time::sleep(Duration::from_secs(86_400)));
        tokio::pin!(expiry_timer);
        let mut last_read = tokio::time::Instant::now();
        let mut read_size = READ_MIN;
        let mut need_flush = false;
        let session = Arc::clone(&self.session);
        let kick = self.kick.clone();
        // The wake-up futures live across iterations: re-creating them each time would register
        // and unregister a waiter, and the shutdown token's waiter list is shared by every
        // connection.
        let stopping = shutdown.cancelled();
        let kicked = kick.kicked();
        let notified = session.notify.notified();
        tokio::pin!(stopping, kicked, notified);
        // Process what arrived with the CONNECT.
        if let Err(fatal) = self.handle_input(&mut rbuf, &mut decoder) {
            return Box::pin(self.fail(wr, fatal)).await;
        }
        loop {
            self.pump();
            self.await_commit().await;
            // An idle connection (nothing buffered, small reads) keeps no read buffer: `read_buf`
            // then allocates 64 bytes for the next read. Partial packets and busy connections
            // read `read_size` bytes at a time.
            if (!rbuf.is_empty() || read_size > READ_MIN) && rbuf.capacity() - rbuf.len() < 64 {
                rbuf.reserve(read_size);
            }
            let spare = (rbuf.capacity() - rbuf.len()).max(64);
            tokio::select! {
                () = &mut stopping => {
                    Box::pin(self.goodbye(wr, ReasonCode::ServerShuttingDown)).await;
                    return End::Abnormal;
                }
                () = &mut expiry_timer, if has_expiry => {
                    let why = Kicked::Revoked(Revoked::TokenExpired);
                    return Box::pin(self.leave(wr, why)).await;
                }
                () = &mut kicked => return Box::pin(self.leave(wr, kick.why())).await,
                () = &mut timer, if keep_alive.is_some() => {
                    // The timer is re-armed lazily: a read only records the time.
                    let deadline = last_read + keep_alive.unwrap_or_default();
                    if deadline > tokio::time::Instant::now() {
                        timer.as_mut().reset(deadline);
                        continue;
                    }
                    tracing::debug!(client_id = %self.client_id, "keep alive expired");
                    Box::pin(self.goodbye(wr, ReasonCode::KeepAliveTimeout)).await;
                    return End::Abnormal;
                }
                io = write_or_flush(wr, &self.wbuf), if !self.wbuf.is_empty() || need_flush => match io {
                    Ok(Some(0)) | Err(_) => return End::Abnormal,
                    Ok(Some(n)) => {
                        self.bytes_sent += n as u64;
                        let _ = self.wbuf.split_to(n);
                        if self.wbuf.is_empty() {
                            need_flush = true;
                            if self.wbuf.capacity() > 4 * WRITE_HIGH {
                                self.wbuf = BytesMut::new();
                            }
                        }
                    }
                    Ok(None) => need_flush = false,
                },
                read = rd.read_buf(&mut rbuf), if self.wbuf.len() < WRITE_HIGH => match read {
                    Ok(0) | Err(_) => return End::Abnormal,
                    Ok(n) => {
                        self.bytes_received += n as u64;
                        last_read = tokio::time::Instant::now();
                        // Grow the read size while reads fill the buffer, shrink it back after.
                        read_size = if n >= spare { (read_size * 2).min(READ_MAX) } else { READ_MIN };
                        match self.handle_input(&mut rbuf, &mut decoder) {
                            Ok(Some(end)) => {
                                Box::pin(self.flush_all(wr)).await;
                                return end;
                            }
                            Ok(None) => {}
                            Err(fatal) => return Box::pin(self.fail(wr, fatal)).await,
                        }
                        if rbuf.is_empty() && read_size == READ_MIN {
                            rbuf = BytesMut::new();
                        }
                    }
                },
                () = &mut notified => notified.set(session.notify.notified()),
            }
        }
    }

    /// Decodes and handles every whole packet in `rbuf`. `Ok(Some(end))` after DISCONNECT.
    fn handle_input(
        &mut self,
        rbuf: &mut BytesMut,
        decoder: &mut Decoder,
    ) -> Result<Option<End>, Fatal> {
        let result = self.handle_all(rbuf, decoder);
        self.flush_counters();
        result
    }

    fn handle_all(
        &mut self,
        rbuf: &mut BytesMut,
        decoder: &mut Decoder,
    ) -> Result<Option<End>, Fatal> {
        while let Some(packet) = decoder.decode(rbuf)? {
            if let Some(end) = self.handle(packet)? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    /// Adds the batched PUBLISH counters to the broker's metrics.
    fn flush_counters(&mut self) {
        let metrics = self.broker.metrics();
        if self.sent > 0 {
            Metrics::add(&metrics.messages_sent, std::mem::take(&mut self.sent));
        }
        if self.received > 0 {
            Metrics::add(
                &metrics.messages_received,
                std::mem::take(&mut self.received),
            );
        }
        for (i, n) in self.sent_qos.iter_mut().enumerate() {
            if *n > 0 {
                Metrics::add(&metrics.messages_sent_by_qos[i], std::mem::take(n));
            }
        }
        for (i, n) in self.received_qos.iter_mut().enumerate() {
            if *n > 0 {
                Metrics::add(&metrics.messages_received_by_qos[i], std::mem::take(n));
            }
        }
        // Socket byte counts of the connection loop (the handshake and goodbye paths add
        // theirs directly).
        if self.bytes_sent > 0 {
            Metrics::add(&metrics.bytes_sent, std::mem::take(&mut self.bytes_sent));
        }
        if self.bytes_received > 0 {
            Metrics::add(
                &metrics.bytes_received,
                std::mem::take(&mut self.bytes_received),
            );
        }
    }

    /// Logs a protocol error, sends the v5 DISCONNECT and ends the connection.
    async fn fail<W: AsyncWrite + Unpin>(&mut self, wr: &mut W, fatal: Fatal) -> End {
        tracing::debug!(client_id = %self.client_id, peer = %self.peer, "closing connection: {}", fatal.why);
        if self.v5() {
            let mut disconnect = Disconnect::new(fatal.code);
            disconnect.properties.reason_string = Some(fatal.why.into());
            self.send(Packet::Disconnect(disconnect));
        }
        self.flush_all(wr).await;
        End::Abnormal
    }

    /// Leaves because the broker said so (`why`): logs it, sends the v5 DISCONNECT and ends the
    /// connection. Like any close the client did not ask for, its will is published.
    async fn leave<W: AsyncWrite + Unpin>(&mut self, wr: &mut W, why: Kicked) -> End {
        match why {
            Kicked::TakenOver => {
                tracing::debug!(client_id = %self.client_id, "session taken over");
            }
            Kicked::Revoked(revoked) => {
                tracing::info!(client_id = %self.client_id, peer = %self.peer, "disconnecting client: {revoked}");
            }
        }
        self.goodbye(wr, why.code()).await;
        End::Abnormal
    }

    /// Sends a v5 DISCONNECT with `code` (nothing before v5) after what is already buffered.
    async fn goodbye<W: AsyncWrite + Unpin>(&mut self, wr: &mut W, code: ReasonCode) {
        if self.v5() {
            self.send(Packet::Disconnect(Disconnect::new(code)));
        }
        self.flush_all(wr).await;
    }

    /// Waits until the store has committed every change behind the write buffer.
    async fn await_commit(&mut self) {
        let ticket = std::mem::take(&mut self.commit);
        if ticket != 0 {
            self.broker.store().committed(ticket).await;
        }
    }

    /// Writes the whole write buffer, bounded in time.
    async fn flush_all<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) {
        if self.wbuf.is_empty() {
            return;
        }
        self.await_commit().await;
        let buf = std::mem::take(&mut self.wbuf);
        let write = async {
            wr.write_all(&buf).await?;
            wr.flush().await
        };
        if let Ok(Ok(())) = tokio::time::timeout(GOODBYE, write).await {
            Metrics::add(&self.broker.metrics().bytes_sent, buf.len() as u64);
        }
    }

    /// Handles one packet from the client.
    fn handle(&mut self, packet: Packet) -> Result<Option<End>, Fatal> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish)?,
            Packet::PubAck(ack) => {
                let mut state = self.session.lock();
                if let Some(i) = state
                    .outgoing
                    .iter()
                    .position(|f| f.pid == ack.pid && f.delivery.qos == QoS::AtLeastOnce)
                {
                    let done = state.outgoing.remove(i);
                    drop(state);
                    self.forget(done);
                }
            }
            Packet::PubRec(rec) => {
                let mut state = self.session.lock();
                let found = state
                    .outgoing
                    .iter()
                    .position(|f| f.pid == rec.pid && f.delivery.qos == QoS::ExactlyOnce);
                match found {
                    // v5: an error code ends the exchange ([MQTT-4.3.3-4] does not apply).
                    Some(i) if rec.code.is_error() => {
                        let done = state.outgoing.remove(i);
                        drop(state);
                        self.forget(done);
                    }
                    Some(i) => {
                        state.outgoing[i].stage = Stage::Released;
                        let id = state.outgoing[i].delivery.store_id;
                        drop(state);
                        // PUBREL goes out once recorded: after a restart the broker must not
                        // send the PUBLISH again (the client may have forgotten its id).
                        if id != 0 {
                            let ticket =
                                self.broker
                                    .store()
                                    .message_released(&self.client_id, id, rec.pid);
                            self.commit = self.commit.max(ticket);
                        }
                        self.send(Packet::PubRel(PubRel::new(rec.pid)));
                    }
                    None => {
                        drop(state);
                        let mut rel = PubRel::new(rec.pid);
                        if self.v5() {
                            rel.code = ReasonCode::PacketIdentifierNotFound;
                        }
                        self.send(Packet::PubRel(rel));
                    }
                }
            }
            Packet::PubRel(rel) => {
                let known = self.session.lock().incoming_qos2.remove(&rel.pid.get());
                // PUBCOMP goes out once the release is recorded, or a restart would take the
                // client's next message with this id for a duplicate.
                if known && self.session.is_durable() {
                    let ticket = self.broker.store().qos2_released(&self.client_id, rel.pid);
                    self.commit = self.commit.max(ticket);
                }
                let mut comp = PubComp::new(rel.pid);
                if !known && self.v5() {
                    comp.code = ReasonCode::PacketIdentifierNotFound;
                }
                self.send(Packet::PubComp(comp));
            }
            Packet::PubComp(comp) => {
                let mut state = self.session.lock();
                if let Some(i) = state
                    .outgoing
                    .iter()
                    .position(|f| f.pid == comp.pid && f.stage == Stage::Released)
                {
                    let done = state.outgoing.remove(i);
                    drop(state);
                    self.forget(done);
                }
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe)?,
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe)?,
            Packet::PingReq => self.send(Packet::PingResp),
            Packet::Disconnect(disconnect) => {
                if let Some(expiry) = disconnect.properties.session_expiry_interval {
                    // [MQTT-3.14.2-2]: expiry 0 at CONNECT cannot be raised at DISCONNECT.
                    if self.expiry == 0 && expiry != 0 {
                        return Err(Fatal::new(
                            ReasonCode::ProtocolError,
                            "[MQTT-3.14.2-2] session expiry set at DISCONNECT after 0 at CONNECT",
                        ));
                    }
                    let expiry = expiry.min(self.broker.config().max_session_expiry);
                    self.session.lock().expiry_interval = expiry;
                }
                return Ok(Some(End::Normal {
                    will: disconnect.code == ReasonCode::DisconnectWithWill,
                }));
            }
            Packet::Connect(_) => {
                return Err(Fatal::new(
                    ReasonCode::ProtocolError,
                    "[MQTT-3.1.0-2] second CONNECT",
                ));
            }
            Packet::Auth(_) => {
                return Err(Fatal::new(
                    ReasonCode::ProtocolError,
                    "AUTH without an authentication method",
                ));
            }
            other => {
                return Err(Fatal::new(
                    ReasonCode::ProtocolError,
                    format!("{:?} may not be sent by a client", other.packet_type()),
                ));
            }
        }
        Ok(None)
    }

    fn on_publish(&mut self, mut publish: Publish) -> Result<(), Fatal> {
        let config = self.broker.config();
        if let Some(bucket) = &mut self.publish_bucket
            && !bucket.take(Instant::now())
        {
            return Err(Fatal::new(
                ReasonCode::MessageRateTooHigh,
                "publish rate limit exceeded",
            ));
        }
        self.received += 1;
        self.received_qos[publish.qos_pid.qos() as usize] += 1;
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > config.topic_alias_maximum {
                return Err(Fatal::new(
                    ReasonCode::TopicAliasInvalid,
                    "[MQTT-3.3.2-9] topic alias out of range",
                ));
            }
            if publish.topic.is_empty() {
                match self.alias_in.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        return Err(Fatal::new(
                            ReasonCode::ProtocolError,
                            "[MQTT-3.3.4-?] unknown topic alias",
                        ));
                    }
                }
            } else {
                self.alias_in.insert(alias, publish.topic.clone());
            }
        }
        if topic::validate_topic_name(&publish.topic).is_err() {
            return Err(Fatal::new(
                ReasonCode::TopicNameInvalid,
                "[MQTT-3.3.2-2] invalid topic name",
            ));
        }
        if publish.topic.split('/').count() > config.max_topic_levels {
            return Err(Fatal::new(
                ReasonCode::TopicNameInvalid,
                "too many topic levels",
            ));
        }
        let allowed = self
            .broker
            .authorizer()
            .may_publish(&self.info(), &publish.topic);
        let code = if allowed {
            ReasonCode::Success
        } else {
            ReasonCode::NotAuthorized
        };
        match publish.qos_pid {
            QosPid::AtMostOnce => {
                if allowed {
                    self.forward(publish);
                }
            }
            QosPid::AtLeastOnce(pid) => {
                let mut code = code;
                if allowed && self.forward(publish).rejected {
                    code = self.quota_exceeded()?;
                }
                let mut ack = PubAck::new(pid);
                if self.v5() {
                    ack.code = code;
                }
                self.send(Packet::PubAck(ack));
            }
            QosPid::ExactlyOnce(pid) => {
                let mut state = self.session.lock();
                // A PUBLISH with a packet id already received is a duplicate: acknowledge
                // again, do not forward again ([MQTT-4.3.3-10]).
                let fresh = !state.incoming_qos2.contains(&pid.get());
                if fresh {
                    if self.v5() && state.incoming_qos2.len() >= usize::from(config.receive_maximum)
                    {
                        return Err(Fatal::new(
                            ReasonCode::ReceiveMaximumExceeded,
                            "[MQTT-3.3.4-9] more unacknowledged QoS 2 publications than Receive Maximum",
                        ));
                    }
                    if allowed {
                        state.incoming_qos2.insert(pid.get());
                    }
                }
                drop(state);
                let mut code = code;
                if fresh && allowed {
                    if self.forward(publish).rejected {
                        self.session.lock().incoming_qos2.remove(&pid.get());
                        code = self.quota_exceeded()?;
                    } else if self.session.is_durable() {
                        let ticket = self.broker.store().qos2_received(&self.client_id, pid);
                        self.commit = self.commit.max(ticket);
                    }
                }
                let mut rec = PubRec::new(pid);
                if self.v5() {
                    rec.code = code;
                }
                self.send(Packet::PubRec(rec));
            }
        }
        Ok(())
    }

    /// The store is full and refused a durable copy of a QoS 1/2 publication: v5 clients get
    /// 0x97 in their acknowledgement; 3.1.1 has no way to say so, so the connection is closed
    /// without acknowledging and the client publishes again after reconnecting.
    fn quota_exceeded(&self) -> Result<ReasonCode, Fatal> {
        if self.v5() {
            Ok(ReasonCode::QuotaExceeded)
        } else {
            Err(Fatal::new(
                ReasonCode::QuotaExceeded,
                "the store is full: publication not acknowledged",
            ))
        }
    }

    /// Forgets a completed or dropped outgoing delivery in the store.
    fn forget(&self, done: Option<OutFlight>) {
        if let Some(id) = done.map(|f| f.delivery.store_id).filter(|id| *id != 0) {
            self.broker.store().message_acked(&self.client_id, id);
        }
    }

    /// Routes a client's publication; its durable effects are awaited before the next write.
    fn forward(&mut self, publish: Publish) -> Durable {
        let mut properties = publish.properties;
        properties.subscription_identifiers.clear();
        let expires_at = properties
            .message_expiry_interval
            .map(|s| Instant::now() + Duration::from_secs(s.into()));
        let msg = Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos_pid.qos(),
            retain: publish.retain,
            properties,
            expires_at,
            origin: self.session.key,
        });
        let mut durable = Durable::default();
        if msg.retain {
            durable = self.broker.retain(&msg);
        }
        let (_, routed) = self.broker.route_durable(&msg, &mut self.routes);
        durable.ticket = durable.ticket.max(routed.ticket);
        durable.rejected |= routed.rejected;
        // Only an acknowledgement waits for the commit: QoS 0 has none (a later one's ticket
        // covers this change too, tickets being ordered).
        if msg.qos != QoS::AtMostOnce {
            self.commit = self.commit.max(durable.ticket);
        }
        durable
    }

    fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Fatal> {
        let config = self.broker.config();
        let sub_id = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        for (filter, options) in subscribe.filters {
            let (group, plain) = match topic::parse_shared(&filter) {
                Ok(Some(shared)) => (Some(shared.group), shared.filter),
                Ok(None) => (None, &*filter),
                Err(_) => {
                    codes.push(ReasonCode::TopicFilterInvalid);
                    continue;
                }
            };
            if topic::validate_topic_filter(plain).is_err()
                || plain.split('/').count() > config.max_topic_levels
            {
                codes.push(ReasonCode::TopicFilterInvalid);
                continue;
            }
            if group.is_some() && options.no_local {
                return Err(Fatal::new(
                    ReasonCode::ProtocolError,
                    "[MQTT-3.8.3-4] No Local on a shared subscription",
                ));
            }
            if !self
                .broker
                .authorizer()
                .may_subscribe(&self.info(), &filter)
            {
                codes.push(ReasonCode::NotAuthorized);
                continue;
            }
            let shared = group.is_some();
            let replaced = self.broker.subscribe(
                &filter,
                Subscriber {
                    session: Arc::clone(&self.session),
                    qos: options.qos,
                    no_local: options.no_local,
                    retain_as_published: options.retain_as_published,
                    id: sub_id,
                },
            );
            self.session.lock().subscriptions.insert(filter.clone());
            if self.session.is_durable() {
                let ticket =
                    self.broker
                        .store()
                        .subscribed(&self.client_id, &filter, &options, sub_id);
                self.commit = self.commit.max(ticket);
            }
            codes.push(ReasonCode::granted(options.qos));
            // [MQTT-3.3.1-6] retained messages go to a new subscription (v5: per Retain
            // Handling; never to shared subscriptions).
            let send = !shared
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendAtSubscribeIfNew => !replaced,
                    RetainHandling::DoNotSend => false,
                };
            if send {
                for msg in self.broker.retained_matching(plain) {
                    retained.push(Delivery {
                        qos: msg.qos.min(options.qos),
                        msg,
                        retain: true,
                        sub_ids: sub_id.into_iter().collect(),
                        store_id: 0,
                    });
                }
            }
        }
        self.send(Packet::SubAck(SubAck {
            pid: subscribe.pid,
            codes,
            properties: Default::default(),
        }));
        for delivery in retained {
            self.broker.deliver(&self.session, delivery);
        }
        Ok(())
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), Fatal> {
        // An invalid filter makes the whole packet malformed [MQTT-4.7.3]: nothing of it is
        // applied, as Mosquitto does, rather than answering it with an UNSUBACK.
        if unsubscribe
            .filters
            .iter()
            .any(|f| topic::validate_topic_filter(f).is_err())
        {
            return Err(Fatal::new(
                ReasonCode::MalformedPacket,
                "[MQTT-4.7.3] invalid topic filter in UNSUBSCRIBE",
            ));
        }
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in unsubscribe.filters {
            let existed = self.session.lock().subscriptions.remove(&filter);
            let removed = self.broker.unsubscribe(&filter, self.session.key);
            if existed || removed {
                if self.session.is_durable() {
                    let ticket = self.broker.store().unsubscribed(&self.client_id, &filter);
                    self.commit = self.commit.max(ticket);
                }
                codes.push(ReasonCode::Success);
            } else {
                codes.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        self.send(Packet::UnsubAck(UnsubAck {
            pid: unsubscribe.pid,
            codes,
            properties: Default::default(),
        }));
        Ok(())
    }

    /// Detaches from the session, publishing the will unless the client disconnected normally.
    fn finish(mut self, end: End) {
        self.flush_counters();
        let will = match end {
            End::Normal { will: false } => None,
            End::Normal { will: true } | End::Abnormal => self.will.map(|w| *w),
        };
        tracing::debug!(client_id = %self.client_id, ?end, "client disconnected");
        self.broker.detach(&self.session, self.generation, will);
    }
}
