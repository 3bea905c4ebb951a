//! In-memory tests: [`ServerConn`]s against the codec's client state ([`ClientState`]), both
//! sans-I/O, joined by byte buffers instead of sockets, on tokio's paused clock (like
//! quinn-proto's `Pair`). The router is the real single-node one ([`Broker`]), so its own
//! timers (will delay, session expiry) run on the same virtual time.
//!
//! `pair/tests.rs` holds the tests on timers and commits; `pair/simulation.rs` runs many clients
//! with random operations and broken links on this harness.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use switchboard_mqtt::client::{Action, ClientState, CloseReason};
use switchboard_mqtt::{
    Bytes, BytesMut, Connect, Decoder, LastWill, Packet, Properties, ProtocolVersion, Publish, QoS,
    SubscriptionOptions,
};

mod simulation;
mod tests;

use super::connect::{self, Arrival};
use super::{Limits, Link, ServerConn};
use crate::broker::router::{Attached, Router, RouterFuture};
use crate::broker::{Broker, BrokerConfig, ConfigAuthorizer, Transport};
use crate::security::Login;

const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40_000);

/// One client, and its server connection while its link is up.
struct Client {
    state: ClientState,
    server: Option<ServerConn>,
    /// Bytes the client wrote that the server has not read yet.
    up: BytesMut,
    /// Bytes the server wrote that the client has not read yet.
    down: BytesMut,
    decoder: Decoder,
    /// The client's own timer (keep alive pings).
    timer: Option<Duration>,
    /// A frozen client sends nothing on its own (its timer is ignored): a dead device.
    frozen: bool,
    /// What the client reported to its application.
    events: Vec<Action>,
    /// Every packet the client received, in order.
    wire: Vec<Packet>,
    /// The client asked for its transport to be closed.
    hangup: bool,
}

impl Client {
    fn deliveries(&self) -> impl Iterator<Item = &Publish> {
        self.events.iter().filter_map(|a| match a {
            Action::Deliver(p) => Some(p),
            _ => None,
        })
    }

    fn close_reason(&self) -> Option<CloseReason> {
        self.events.iter().rev().find_map(|a| match a {
            Action::Close { reason } => Some(*reason),
            _ => None,
        })
    }
}

/// Servers and clients joined in memory.
struct Pair {
    router: Arc<dyn Router>,
    limits: Limits,
    t0: tokio::time::Instant,
    clients: Vec<Client>,
    /// When set, each step moves a random prefix of the bytes waiting (packets arrive in
    /// pieces, and a cut loses whatever is still on the wire).
    chop: Option<fastrand::Rng>,
}

impl Pair {
    fn new(config: BrokerConfig) -> Self {
        let broker = Broker::new(config);
        let router = Arc::new(broker.clone());
        Self::with_router(broker, router)
    }

    fn with_router(broker: Broker, router: Arc<dyn Router>) -> Self {
        Self {
            limits: Limits::from(broker.config()),
            router,
            t0: tokio::time::Instant::now(),
            clients: Vec::new(),
            chop: None,
        }
    }

    fn now(&self) -> (Instant, Duration) {
        let now = tokio::time::Instant::now();
        (now.into_std(), now - self.t0)
    }

    /// A client that will send `connect`; not connected yet.
    fn add(&mut self, connect: Connect) -> usize {
        let decoder = client_decoder(connect.protocol);
        self.clients.push(Client {
            state: ClientState::new(connect),
            server: None,
            up: BytesMut::new(),
            down: BytesMut::new(),
            decoder,
            wire: Vec::new(),
            hangup: false,
            timer: None,
            frozen: false,
            events: Vec::new(),
        });
        self.clients.len() - 1
    }

    fn client(&self, i: usize) -> &Client {
        &self.clients[i]
    }

    fn state(&mut self, i: usize) -> &mut ClientState {
        &mut self.clients[i].state
    }

    /// Opens client `i`'s link: CONNECT, the server's checks and terms, attach, CONNACK.
    async fn connect(&mut self, i: usize) {
        assert!(self.clients[i].server.is_none(), "client {i} is connected");
        self.clients[i].hangup = false;
        let (_, t) = self.now();
        self.clients[i].state.handle_connected(t);
        self.client_actions(i);
        let mut decoder = Decoder::new(self.limits.max_packet_size);
        let client = &mut self.clients[i];
        let first = decoder.decode(&mut client.up);
        let Ok(Some(Packet::Connect(connect))) = first else {
            panic!("client {i} sent no CONNECT: {first:?}");
        };
        let link = Link {
            router: Arc::clone(&self.router),
            authorizer: Arc::new(ConfigAuthorizer::new(Vec::new())),
            limits: self.limits,
        };
        connect::check(&connect, &link.limits, false).expect("CONNECT passes the checks");
        let login = Login::proven("pair");
        let (now, _) = self.now();
        let terms = connect::terms(&link, &connect, &login, PEER, Transport::Tcp, now)
            .expect("CONNECT terms");
        let attached: Attached = link
            .router
            .attach(
                &terms.client_id,
                terms.clean_start,
                terms.expiry,
                terms.will.as_deref(),
            )
            .await;
        let arrival = Arrival {
            addr: PEER,
            transport: Transport::Tcp,
            login: Arc::new(login),
            username: None,
            auth_data: None,
            publish_bucket: None,
            unix_now: 0,
            decoder,
        };
        let (now, _) = self.now();
        self.clients[i].server = Some(ServerConn::open(
            link, &connect, terms, attached, arrival, now,
        ));
        self.settle();
    }

    /// Breaks client `i`'s link without a DISCONNECT (power cut, Wi-Fi gone): bytes on the wire
    /// are lost both ways.
    fn cut(&mut self, i: usize) {
        // What the client wrote before the cut is on the wire, and lost with it.
        self.client_actions(i);
        let client = &mut self.clients[i];
        client.up.clear();
        client.down.clear();
        client.decoder = client_decoder(client.state.protocol());
        if let Some(mut server) = client.server.take() {
            server.transport_lost();
            server.finish();
        }
        client.state.handle_connection_lost();
        client.timer = None;
        self.client_actions(i);
        self.clients[i].hangup = false;
    }

    /// Writes a packet from client `i` as is, past its client state (a misbehaving client).
    fn inject(&mut self, i: usize, packet: &Packet) {
        let client = &mut self.clients[i];
        let version = client.state.protocol();
        packet.encode(version, &mut client.up).expect("encodable");
    }

    /// Takes client `i`'s actions: packets onto the wire, its timer, events for the test.
    fn client_actions(&mut self, i: usize) {
        let client = &mut self.clients[i];
        let version = client.state.protocol();
        while let Some(action) = client.state.poll_action() {
            match action {
                Action::Send(packet) => packet.encode(version, &mut client.up).expect("encodable"),
                Action::ArmTimer { at } => client.timer = Some(at),
                other => {
                    client.hangup |= matches!(other, Action::Close { .. });
                    client.events.push(other);
                }
            }
        }
    }

    /// Moves bytes and actions until nothing moves. A commit that is not ready stays pending.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                moved |= self.step(i);
            }
            if !moved {
                return;
            }
        }
        panic!("the pair does not settle");
    }

    /// One round for client `i`; true when something moved.
    fn step(&mut self, i: usize) -> bool {
        let (now, t) = self.now();
        self.client_actions(i);
        let router = Arc::clone(&self.router);
        let client = &mut self.clients[i];
        let Some(server) = &mut client.server else {
            return false;
        };
        let mut moved = false;
        if !client.up.is_empty() {
            let n = chop(self.chop.as_mut(), client.up.len());
            let rest = client.up.split_off(n);
            server.handle_input(&mut client.up, now);
            client.up.unsplit(rest);
            moved = true;
        }
        server.pump(now);
        if let Some(ticket) = server.waiting_for()
            && poll_once(router.committed(ticket))
        {
            server.committed(ticket);
            moved = true;
        }
        let ready = server.transmit();
        if !ready.is_empty() {
            let n = chop(self.chop.as_mut(), ready.len());
            client.down.extend_from_slice(&ready[..n]);
            server.advance(n);
            moved = true;
        }
        loop {
            match client.decoder.decode(&mut client.down) {
                Ok(Some(packet)) => {
                    client.wire.push(packet.clone());
                    client.state.handle_packet(packet, t);
                }
                Ok(None) => break,
                Err(err) => {
                    client.state.handle_decode_error(&err);
                    client.down.clear();
                    break;
                }
            }
        }
        // A closing server ends once it wrote what it could (the driver's last flush).
        let server_done = server.closing().is_some()
            && server.transmit().is_empty()
            && server.waiting_for().is_none();
        self.client_actions(i);
        let client = &mut self.clients[i];
        let client_closed = std::mem::take(&mut client.hangup) && client.server.is_some();
        if client_closed {
            // The client closes its socket: the server reads what was sent first, then EOF.
            let server = client.server.as_mut().expect("checked");
            if !client.up.is_empty() {
                server.handle_input(&mut client.up, now);
            }
            server.transport_lost();
        }
        if server_done || client_closed {
            let server = client.server.take().expect("checked");
            server.finish();
            client.up.clear();
            client.down.clear();
            client.decoder = client_decoder(client.state.protocol());
            client.timer = None;
            if !client_closed {
                client.state.handle_connection_lost();
                self.client_actions(i);
                self.clients[i].hangup = false;
            }
            moved = true;
        }
        moved
    }

    /// Lets `d` of virtual time pass, firing client and server timers (and the broker's own) at
    /// their deadlines.
    async fn advance(&mut self, d: Duration) {
        let end = tokio::time::Instant::now() + d;
        loop {
            let (now, t) = self.now();
            let mut next = end;
            for c in &self.clients {
                if let Some(at) = c.timer.filter(|_| !c.frozen) {
                    next = next.min(self.t0 + at);
                }
                if let Some(at) = c.server.as_ref().and_then(ServerConn::poll_timeout) {
                    next = next.min(tokio::time::Instant::from_std(at));
                }
            }
            let _ = (now, t);
            tokio::time::sleep_until(next).await;
            // Let the broker's timer tasks run.
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            let (now, t) = self.now();
            for c in &mut self.clients {
                if !c.frozen && c.timer.is_some_and(|at| at <= t) {
                    c.timer = None;
                    c.state.handle_timer(t);
                }
                if let Some(server) = &mut c.server
                    && server.poll_timeout().is_some_and(|at| at <= now)
                {
                    server.handle_timeout(now);
                }
            }
            self.settle();
            if tokio::time::Instant::now() >= end {
                return;
            }
        }
    }
}

/// How many of `len` waiting bytes move in one step.
fn chop(rng: Option<&mut fastrand::Rng>, len: usize) -> usize {
    match rng {
        Some(rng) if len > 1 => {
            if rng.bool() {
                rng.usize(1..len)
            } else {
                len
            }
        }
        _ => len,
    }
}

/// A decoder for what a server sends to a client of `version`.
fn client_decoder(version: ProtocolVersion) -> Decoder {
    let mut decoder = Decoder::new(u32::MAX);
    decoder.set_version(version);
    decoder
}

/// Polls a future once: true when it is ready.
fn poll_once(mut fut: RouterFuture<'_, ()>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    fut.as_mut().poll(&mut cx) == Poll::Ready(())
}

fn v5(client_id: &str) -> Connect {
    Connect::new(ProtocolVersion::V5, client_id)
}

/// A v5 CONNECT that keeps its session for `expiry` seconds.
fn v5_kept(client_id: &str, expiry: u32) -> Connect {
    let mut connect = v5(client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(expiry);
    connect
}

/// A will published `delay` seconds after the link breaks.
fn will(topic: &str, payload: &str, qos: QoS, delay: u32) -> LastWill {
    LastWill {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        properties: Properties {
            will_delay_interval: Some(delay),
            ..Properties::default()
        },
    }
}

fn sub(pair: &mut Pair, i: usize, filter: &str, qos: QoS) {
    pair.state(i)
        .subscribe(
            vec![(filter.into(), SubscriptionOptions::qos(qos))],
            Properties::default(),
        )
        .expect("subscribe");
    pair.settle();
}

fn publish(pair: &mut Pair, i: usize, topic: &str, payload: &str, qos: QoS, retain: bool) {
    pair.state(i)
        .publish(
            topic.to_owned(),
            Bytes::copy_from_slice(payload.as_bytes()),
            qos,
            retain,
            Properties::default(),
        )
        .expect("publish");
    pair.settle();
}

fn payloads(client: &Client) -> Vec<String> {
    client
        .deliveries()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}
