//! One client connection, split into a sans-I/O protocol core and a thin tokio driver.
//!
//! [`ServerConn`] is the server side of MQTT for one client after its CONNECT was accepted: bytes
//! and the current time go in ([`ServerConn::handle_input`], [`ServerConn::handle_timeout`],
//! [`ServerConn::pump`]); what to write, when to wake up and whether to close come out
//! ([`ServerConn::transmit`], [`ServerConn::poll_timeout`], [`ServerConn::closing`]). It holds no
//! socket and reads no clock, so a test runs it against the codec's client state in memory on
//! virtual time (`pair.rs`). Everything it shares with other connections goes through the
//! [`Router`] seam; permissions through the [`Authorizer`].
//!
//! The concerns live in their own files: `connect.rs` (CONNECT checks, CONNACK, the session's
//! terms), `inbound.rs` (packets from the client), `outbound.rs` (deliveries to the client: the
//! in-flight window, topic aliases, expiry), `violation.rs` (the typed protocol errors) and
//! `driver.rs`, the only code that touches sockets, clocks and tokio.
//!
//! # Acknowledged means committed
//! A change the store must keep (a QoS 1/2 message, a subscription of a durable session, an
//! incoming QoS 2 id) returns a store ticket. The packet that acknowledges it is encoded into the
//! write buffer after a *mark* (buffer offset, ticket); [`ServerConn::transmit`] hands out only
//! the bytes before the first mark whose ticket is not committed yet. Input is read and handled
//! meanwhile, so a SUBSCRIBE takes effect the moment it is read, even while an earlier
//! acknowledgement waits for its commit.

mod connect;
mod driver;
mod inbound;
mod outbound;
#[cfg(test)]
mod pair;
mod violation;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_mqtt::{
    ByteString, BytesMut, Decoder, Disconnect, Packet, ProtocolVersion, ReasonCode,
};

pub(crate) use self::connect::Limits;
pub(super) use self::driver::serve;
pub(crate) use self::violation::Violation;

use super::router::Router;
use super::session::{Kick, Kicked, Message, Session};
use super::store::Ticket;
use super::{Authorizer, ClientInfo, Metrics, Transport};
use crate::security::{Login, TokenBucket};

/// Stop draining the session queue (and reading) while this much is waiting to be written.
pub(crate) const WRITE_HIGH: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// DISCONNECT from the client; `will` for v5 reason 0x04.
    Normal { will: bool },
    /// Anything else: I/O error, EOF, protocol error, keep alive, takeover, shutdown.
    Abnormal,
}

/// Why the server closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Close {
    /// The client broke a rule.
    Violation(Violation),
    /// No packet within one and a half keep alive intervals.
    KeepAlive,
    /// Taken over, disconnected by the API, or its login was revoked.
    Kicked(Kicked),
    /// The gateway is stopping.
    Shutdown,
    /// A store commit an acknowledgement depended on failed.
    StoreFailed,
}

impl Close {
    /// The reason code of the v5 DISCONNECT.
    pub(crate) fn code(&self) -> ReasonCode {
        match self {
            Self::Violation(v) => v.code(),
            Self::KeepAlive => ReasonCode::KeepAliveTimeout,
            Self::Kicked(why) => why.code(),
            Self::Shutdown => ReasonCode::ServerShuttingDown,
            Self::StoreFailed => ReasonCode::UnspecifiedError,
        }
    }
}

/// What a connection is given: the shared world behind two seams, and the limits in force.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) router: Arc<dyn Router>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) limits: Limits,
}

/// Who the client is, as the authorizer sees it.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) client_id: ByteString,
    pub(crate) username: Option<ByteString>,
    pub(crate) addr: SocketAddr,
    pub(crate) transport: Transport,
    /// Who the client authenticated as (token scope, ACL user) and what proved it; shared with
    /// the broker's table of live clients, which re-checks it after a security reload.
    pub(crate) login: Arc<Login>,
}

impl Peer {
    pub(crate) fn info(&self) -> ClientInfo<'_> {
        ClientInfo {
            client_id: &self.client_id,
            username: self.username.as_deref(),
            peer: self.addr,
            transport: self.transport,
            identity: self.login.identity(),
        }
    }
}

/// PUBLISH and byte counters since they were last added to the shared metrics (batched so
/// busy connections keep the shared cache lines quiet).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: [u64; 3],
    pub(crate) received: [u64; 3],
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) dropped: u64,
}

impl Counters {
    /// Adds the counts to `metrics` and starts again from zero.
    pub(crate) fn flush_into(&mut self, metrics: &Metrics) {
        let sent: u64 = self.sent.iter().sum();
        let received: u64 = self.received.iter().sum();
        if sent > 0 {
            Metrics::add(&metrics.messages_sent, sent);
        }
        if received > 0 {
            Metrics::add(&metrics.messages_received, received);
        }
        for (i, n) in self.sent.iter().enumerate() {
            if *n > 0 {
                Metrics::add(&metrics.messages_sent_by_qos[i], *n);
            }
        }
        for (i, n) in self.received.iter().enumerate() {
            if *n > 0 {
                Metrics::add(&metrics.messages_received_by_qos[i], *n);
            }
        }
        if self.bytes_sent > 0 {
            Metrics::add(&metrics.bytes_sent, self.bytes_sent);
        }
        if self.bytes_received > 0 {
            Metrics::add(&metrics.bytes_received, self.bytes_received);
        }
        if self.dropped > 0 {
            Metrics::add(&metrics.messages_dropped, self.dropped);
        }
        *self = Self::default();
    }
}

/// Bytes from `at` on leave only once every change up to `hi` is committed, and not at all
/// when a change in `lo..=hi` was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    at: usize,
    lo: Ticket,
    hi: Ticket,
}

/// Encoded packets waiting for the socket, and the commits they wait for.
#[derive(Debug, Default)]
struct Outbox {
    buf: BytesMut,
    /// Offsets and `hi` tickets both increase.
    marks: VecDeque<Mark>,
}

impl Outbox {
    /// Bytes encoded from now on wait for `ticket` (0: nothing to wait for).
    fn hold(&mut self, ticket: Ticket) {
        if ticket == 0 {
            return;
        }
        let at = self.buf.len();
        match self.marks.back_mut() {
            // Later bytes already wait for an earlier ticket: widening the mark keeps the order.
            Some(m) if m.at == at || m.hi >= ticket => {
                m.lo = m.lo.min(ticket);
                m.hi = m.hi.max(ticket);
            }
            _ => self.marks.push_back(Mark {
                at,
                lo: ticket,
                hi: ticket,
            }),
        }
    }

    /// Every change up to `ticket` is committed: releases the marks it covers. `Err(at)` when
    /// `lost` says a change behind the mark at `at` was lost: nothing from `at` on may leave.
    fn committed(
        &mut self,
        ticket: Ticket,
        lost: impl Fn(Ticket, Ticket) -> bool,
    ) -> Result<(), usize> {
        while let Some(m) = self.marks.front().copied().filter(|m| m.hi <= ticket) {
            if lost(m.lo, m.hi) {
                return Err(m.at);
            }
            self.marks.pop_front();
        }
        Ok(())
    }

    /// Drops everything from `at` on (and every mark).
    fn discard_from(&mut self, at: usize) {
        self.buf.truncate(at);
        self.marks.clear();
    }

    /// Bytes that may be written now.
    fn ready(&self) -> &[u8] {
        let end = self.marks.front().map_or(self.buf.len(), |m| m.at);
        &self.buf[..end]
    }

    /// `n` bytes of [`Outbox::ready`] were written.
    fn advance(&mut self, n: usize) {
        let _ = self.buf.split_to(n);
        for m in &mut self.marks {
            m.at -= n;
        }
        if self.buf.is_empty() && self.buf.capacity() > 4 * WRITE_HIGH {
            self.buf = BytesMut::new();
        }
    }
}

/// The server side of one accepted connection. See the module documentation.
#[derive(Debug)]
pub(crate) struct ServerConn {
    link: Link,
    session: Arc<Session>,
    generation: u64,
    /// Makes this connection leave (takeover, HTTP API, revoked login), saying why; the driver
    /// watches it, the session slot and the table of live clients hold clones.
    kick: Kick,
    version: ProtocolVersion,
    peer: Peer,
    decoder: Decoder,
    /// The will and its delay (v5), dropped on a normal DISCONNECT.
    will: Option<Box<(Message, u32)>>,
    /// Keep alive in force (0: none) and when the client was last heard from.
    keep_alive: u16,
    last_heard: Instant,
    /// When a token login expires (the connection is closed then).
    login_expires: Option<Instant>,
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
    out: Outbox,
    counters: Counters,
    /// The `[limits] publish_rate` token bucket; `None`: no limit.
    publish_bucket: Option<TokenBucket>,
    /// Set once the connection is to close: how it ended (and why, when the server closes it).
    closing: Option<(End, Option<Close>)>,
}

impl ServerConn {
    fn v5(&self) -> bool {
        self.version.is_v5()
    }

    /// The session this connection is attached to (its queue's `Notify` wakes the driver).
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The client identifier in force (assigned one included).
    pub(crate) fn client_id(&self) -> &ByteString {
        &self.peer.client_id
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn kick(&self) -> &Kick {
        &self.kick
    }

    pub(crate) fn version(&self) -> ProtocolVersion {
        self.version
    }

    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Counters to add to the shared metrics.
    pub(crate) fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// Encodes a control packet into the write buffer.
    fn send(&mut self, packet: Packet) {
        if let Err(err) = packet.encode(self.version, &mut self.out.buf) {
            tracing::warn!(client_id = %self.peer.client_id, "cannot encode {:?}: {err}", packet.packet_type());
        }
    }

    /// What is encoded from now on waits for `ticket`'s commit.
    fn hold(&mut self, ticket: Ticket) {
        self.out.hold(ticket);
    }

    /// Decodes and handles every whole packet in `rbuf`, read at `now`.
    pub(crate) fn handle_input(&mut self, rbuf: &mut BytesMut, now: Instant) {
        if self.closing.is_some() {
            rbuf.clear();
            return;
        }
        if !rbuf.is_empty() {
            self.last_heard = now;
        }
        loop {
            match self.decoder.decode(rbuf) {
                Ok(Some(packet)) => {
                    if let Err(violation) = self.handle_packet(packet, now) {
                        self.close(Close::Violation(violation));
                    }
                    if self.closing.is_some() {
                        rbuf.clear();
                        return;
                    }
                }
                Ok(None) => return,
                Err(err) => {
                    self.close(Close::Violation(err.into()));
                    rbuf.clear();
                    return;
                }
            }
        }
    }

    /// The next instant [`ServerConn::handle_timeout`] must be called at.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let keep_alive = (self.keep_alive > 0)
            .then(|| self.last_heard + Duration::from_millis(u64::from(self.keep_alive) * 1500));
        match (keep_alive, self.login_expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes the connection when a deadline passed: keep alive (one and a half intervals
    /// without a packet: [MQTT-3.1.2-24] in 3.1.1, [MQTT-3.1.2-22] in 5.0) or the expiry of a
    /// token login.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.closing.is_some() {
            return;
        }
        if self.login_expires.is_some_and(|at| at <= now) {
            let why = Kicked::Revoked(crate::security::Revoked::TokenExpired);
            self.close(Close::Kicked(why));
            return;
        }
        let keep_alive = Duration::from_millis(u64::from(self.keep_alive) * 1500);
        if self.keep_alive > 0 && self.last_heard + keep_alive <= now {
            tracing::debug!(client_id = %self.peer.client_id, "keep alive expired");
            self.close(Close::KeepAlive);
        }
    }

    /// The broker told this connection to leave.
    pub(crate) fn kicked(&mut self, why: Kicked) {
        match why {
            Kicked::TakenOver => {
                tracing::debug!(client_id = %self.peer.client_id, "session taken over");
            }
            Kicked::Revoked(revoked) => {
                tracing::info!(client_id = %self.peer.client_id, peer = %self.peer.addr, "disconnecting client: {revoked}");
            }
        }
        self.close(Close::Kicked(why));
    }

    /// The gateway is stopping.
    pub(crate) fn shutdown(&mut self) {
        self.close(Close::Shutdown);
    }

    /// The transport is gone (EOF, I/O error).
    pub(crate) fn transport_lost(&mut self) {
        if self.closing.is_none() {
            self.closing = Some((End::Abnormal, None));
        }
    }

    /// Ends the connection: a v5 client gets a DISCONNECT after what is already buffered.
    fn close(&mut self, why: Close) {
        if self.closing.is_some() {
            return;
        }
        if let Close::Violation(v) = &why {
            tracing::debug!(client_id = %self.peer.client_id, peer = %self.peer.addr, "closing connection: {v}");
        }
        if self.v5() {
            let mut disconnect = Disconnect::new(why.code());
            match &why {
                Close::Violation(v) => {
                    disconnect.properties.reason_string = Some(v.to_string().into());
                }
                Close::StoreFailed => {
                    disconnect.properties.reason_string =
                        Some("the store could not commit: not acknowledged".into());
                }
                _ => {}
            }
            self.send(Packet::Disconnect(disconnect));
        }
        self.closing = Some((End::Abnormal, Some(why)));
    }

    /// `Some` once the connection is to close: flush [`ServerConn::transmit`], then end it.
    pub(crate) fn closing(&self) -> Option<&(End, Option<Close>)> {
        self.closing.as_ref()
    }

    /// Bytes that may be written now (everything before the first uncommitted mark).
    pub(crate) fn transmit(&self) -> &[u8] {
        self.out.ready()
    }

    /// `n` bytes of [`ServerConn::transmit`] were written.
    pub(crate) fn advance(&mut self, n: usize) {
        self.counters.bytes_sent += n as u64;
        self.out.advance(n);
    }

    /// The ticket the next bytes to write wait for, if they wait.
    pub(crate) fn waiting_for(&self) -> Option<Ticket> {
        self.out.marks.front().map(|m| m.hi)
    }

    /// The store committed every change up to `ticket`, or failed to: an acknowledgement that
    /// depends on a lost change is never sent. What was encoded from it on is dropped and the
    /// connection closes (v5: DISCONNECT 0x80); the client sends its unacknowledged messages
    /// again after reconnecting, and the session's deliveries are sent again then.
    pub(crate) fn committed(&mut self, ticket: Ticket) {
        let router = Arc::clone(&self.link.router);
        if let Err(at) = self.out.committed(ticket, |lo, hi| router.lost(lo, hi)) {
            tracing::error!(client_id = %self.peer.client_id, "a store commit failed: closing the connection without acknowledging");
            self.out.discard_from(at);
            self.close(Close::StoreFailed);
        }
    }

    /// Whether the driver should read more input: open, and not too much left to write.
    pub(crate) fn wants_input(&self) -> bool {
        self.closing.is_none() && self.out.buf.len() < WRITE_HIGH
    }

    /// Detaches from the session, publishing the will unless the client disconnected normally.
    pub(crate) fn finish(mut self) {
        let end = self.closing.as_ref().map_or(End::Abnormal, |(end, _)| *end);
        let will = match end {
            End::Normal { will: false } => None,
            End::Normal { will: true } | End::Abnormal => self.will.take().map(|w| *w),
        };
        tracing::debug!(client_id = %self.peer.client_id, ?end, "client disconnected");
        self.link
            .router
            .detach(&self.session, self.generation, will);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_change_keeps_everything_behind_its_mark() {
        let mut out = Outbox::default();
        out.buf.extend_from_slice(b"ok");
        out.hold(4);
        out.buf.extend_from_slice(b"ack");
        // An older ticket behind a newer mark widens it: its loss must hold the ack too.
        out.hold(2);
        out.buf.extend_from_slice(b"ack2");
        assert_eq!(out.committed(4, |lo, hi| lo <= 2 && 2 <= hi), Err(2));
        out.discard_from(2);
        assert_eq!(out.ready(), b"ok");
        assert!(out.marks.is_empty());
    }

    fn none(_: Ticket, _: Ticket) -> bool {
        false
    }

    #[test]
    fn outbox_holds_bytes_behind_uncommitted_tickets() {
        let mut out = Outbox::default();
        out.buf.extend_from_slice(b"ab");
        out.hold(5);
        out.buf.extend_from_slice(b"cd");
        out.hold(3); // older ticket after a newer one: already covered
        out.buf.extend_from_slice(b"ef");
        out.hold(7);
        out.buf.extend_from_slice(b"gh");
        assert_eq!(out.ready(), b"ab");
        out.advance(1);
        assert_eq!(out.ready(), b"b");
        out.committed(4, none).unwrap();
        assert_eq!(out.ready(), b"b");
        out.committed(5, none).unwrap();
        assert_eq!(out.ready(), b"bcdef");
        out.advance(5);
        assert_eq!(out.ready(), b"");
        out.committed(7, none).unwrap();
        assert_eq!(out.ready(), b"gh");
    }

    #[test]
    fn a_hold_at_the_same_offset_raises_the_ticket() {
        let mut out = Outbox::default();
        out.hold(2);
        out.hold(9);
        out.buf.extend_from_slice(b"x");
        out.committed(2, none).unwrap();
        assert_eq!(out.ready(), b"");
        out.committed(9, none).unwrap();
        assert_eq!(out.ready(), b"x");
    }
}
