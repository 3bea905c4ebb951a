//! In-memory tests: [`ServerConn`]s against the codec's client state ([`ClientState`]), both
//! sans-I/O, joined by byte buffers instead of sockets, on tokio's paused clock (like
//! quinn-proto's `Pair`). The router is the real single-node one ([`Broker`]), so its own
//! timers (will delay, session expiry) run on the same virtual time.
//!
//! `simulation.rs` runs many clients with random operations and broken links on this harness.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use switchboard_mqtt::client::{Action, ClientState, CloseReason};
use switchboard_mqtt::{
    ByteString, Bytes, BytesMut, Connect, Decoder, LastWill, Packet, PacketId, Properties,
    ProtocolVersion, Publish, QoS, QosPid, ReasonCode, SubscriptionOptions,
};
use tokio::sync::watch;

mod simulation;

use super::connect::{self, Arrival};
use super::{Limits, Link, ServerConn};
use crate::broker::router::{
    Attached, Change, Durability, Published, Router, RouterFuture, Subscribed,
};
use crate::broker::session::{Delivery, Message, Session};
use crate::broker::store::Ticket;
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
            .attach(&terms.client_id, terms.clean_start, terms.expiry)
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

#[tokio::test(start_paused = true)]
async fn keep_alive_closes_a_silent_client_after_one_and_a_half_intervals() {
    let mut pair = Pair::new(BrokerConfig::default());
    let mut connect = v5("silent");
    connect.keep_alive = 10;
    let silent = pair.add(connect.clone());
    connect.client_id = "chatty".into();
    let chatty = pair.add(connect);
    pair.connect(silent).await;
    pair.connect(chatty).await;
    pair.clients[silent].frozen = true;

    pair.advance(Duration::from_millis(14_900)).await;
    assert!(pair.client(silent).server.is_some(), "closed before 15 s");
    pair.advance(Duration::from_millis(200)).await;
    assert!(
        pair.client(silent).server.is_none(),
        "still open after 15 s"
    );
    assert_eq!(
        pair.client(silent).close_reason(),
        Some(CloseReason::ServerDisconnect(ReasonCode::KeepAliveTimeout))
    );
    // A client that pings stays.
    pair.advance(Duration::from_secs(120)).await;
    assert!(pair.client(chatty).server.is_some());
    assert!(pair.client(chatty).state.is_connected());
}

#[tokio::test(start_paused = true)]
async fn a_will_is_published_after_its_delay() {
    let mut pair = Pair::new(BrokerConfig::default());
    let mut connect = v5_kept("device", 3600);
    connect.will = Some(will(
        "devices/device/status",
        "offline",
        QoS::AtLeastOnce,
        5,
    ));
    let device = pair.add(connect);
    let watcher = pair.add(v5("watcher"));
    pair.connect(device).await;
    pair.connect(watcher).await;
    sub(&mut pair, watcher, "devices/+/status", QoS::AtLeastOnce);

    pair.cut(device);
    pair.advance(Duration::from_millis(4_900)).await;
    assert!(
        payloads(pair.client(watcher)).is_empty(),
        "will before its delay"
    );
    pair.advance(Duration::from_millis(200)).await;
    assert_eq!(payloads(pair.client(watcher)), ["offline"]);
}

#[tokio::test(start_paused = true)]
async fn a_will_is_not_published_when_the_client_returns_within_the_delay() {
    let mut pair = Pair::new(BrokerConfig::default());
    let mut connect = v5_kept("device", 3600);
    connect.will = Some(will("devices/device/status", "offline", QoS::AtMostOnce, 5));
    let device = pair.add(connect);
    let watcher = pair.add(v5("watcher"));
    pair.connect(device).await;
    pair.connect(watcher).await;
    sub(&mut pair, watcher, "devices/#", QoS::AtMostOnce);

    pair.cut(device);
    pair.advance(Duration::from_secs(3)).await;
    pair.connect(device).await;
    pair.advance(Duration::from_secs(10)).await;
    assert!(payloads(pair.client(watcher)).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_session_keeps_messages_until_its_expiry_and_not_after() {
    let mut pair = Pair::new(BrokerConfig::default());
    let sleeper = pair.add(v5_kept("sleeper", 30));
    let sender = pair.add(v5("sender"));
    pair.connect(sleeper).await;
    pair.connect(sender).await;
    sub(&mut pair, sleeper, "lamp/#", QoS::AtLeastOnce);
    pair.cut(sleeper);

    pair.advance(Duration::from_secs(10)).await;
    publish(&mut pair, sender, "lamp/1", "on", QoS::AtLeastOnce, false);
    pair.advance(Duration::from_secs(10)).await;
    pair.connect(sleeper).await;
    assert!(matches!(
        pair.client(sleeper)
            .events
            .iter()
            .rev()
            .find(|a| matches!(a, Action::Connected { .. })),
        Some(Action::Connected {
            session_present: true
        })
    ));
    assert_eq!(payloads(pair.client(sleeper)), ["on"]);

    pair.cut(sleeper);
    publish(&mut pair, sender, "lamp/1", "off", QoS::AtLeastOnce, false);
    pair.advance(Duration::from_secs(31)).await;
    pair.connect(sleeper).await;
    assert!(matches!(
        pair.client(sleeper)
            .events
            .iter()
            .rev()
            .find(|a| matches!(a, Action::Connected { .. })),
        Some(Action::Connected {
            session_present: false
        })
    ));
    assert_eq!(
        payloads(pair.client(sleeper)),
        ["on"],
        "expired session delivered"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_over_the_receive_maximum_reads_why_it_is_disconnected() {
    let mut pair = Pair::new(BrokerConfig {
        receive_maximum: 2,
        ..BrokerConfig::default()
    });
    let greedy = pair.add(v5("greedy"));
    pair.connect(greedy).await;
    for pid in 1..=3 {
        let publish = Publish {
            dup: false,
            qos_pid: QosPid::ExactlyOnce(PacketId::new(pid).expect("non-zero")),
            retain: false,
            topic: "t".into(),
            properties: Properties::default(),
            payload: Bytes::from_static(b"x"),
        };
        pair.inject(greedy, &Packet::Publish(publish));
    }
    pair.settle();
    assert!(pair.client(greedy).server.is_none());
    // The client state takes the PUBRECs for ids it never used for a protocol error; what
    // matters is what the server wrote: two PUBRECs, then DISCONNECT 0x93 saying why.
    let wire = &pair.client(greedy).wire;
    assert!(matches!(wire[1], Packet::PubRec(_)) && matches!(wire[2], Packet::PubRec(_)));
    let Some(Packet::Disconnect(disconnect)) = wire.last() else {
        panic!("no DISCONNECT: {wire:?}");
    };
    assert_eq!(disconnect.code, ReasonCode::ReceiveMaximumExceeded);
    let why = disconnect.properties.reason_string.as_deref().unwrap_or("");
    assert!(why.contains("MQTT-3.3.4-9"), "{why}");
}

/// A router whose commits complete only when the test says so (the store's fsync latency,
/// under the test's control). Every durable change gets a fresh ticket.
#[derive(Debug)]
struct Gated {
    inner: Broker,
    next: AtomicU64,
    released: watch::Sender<Ticket>,
}

impl Gated {
    fn ticket(&self) -> Ticket {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn release_all(&self) {
        self.released
            .send_replace(self.next.load(Ordering::Relaxed));
    }
}

impl Router for Gated {
    fn assign_client_id(&self) -> ByteString {
        self.inner.assign_client_id()
    }
    fn attach<'a>(
        &'a self,
        client_id: &'a ByteString,
        clean_start: bool,
        expiry: u32,
    ) -> RouterFuture<'a, Attached> {
        self.inner.attach(client_id, clean_start, expiry)
    }
    fn detach(&self, session: &Arc<Session>, generation: u64, will: Option<(Message, u32)>) {
        self.inner.detach(session, generation, will);
    }
    fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &ByteString,
        options: &SubscriptionOptions,
        id: Option<u32>,
    ) -> Subscribed {
        let subscribed = self.inner.subscribe(session, filter, options, id);
        Subscribed {
            ticket: self.ticket(),
            ..subscribed
        }
    }
    fn unsubscribe(&self, session: &Arc<Session>, filter: &ByteString) -> Option<Ticket> {
        self.inner
            .unsubscribe(session, filter)
            .map(|_| self.ticket())
    }
    fn publish(&self, msg: Arc<Message>, durability: Durability) -> Published {
        Published {
            ticket: self.ticket(),
            ..self.inner.publish(msg, durability)
        }
    }
    fn retained(&self, filter: &str) -> Vec<Arc<Message>> {
        Router::retained(&self.inner, filter)
    }
    fn deliver(&self, session: &Session, delivery: Delivery) -> Ticket {
        self.inner.deliver(session, delivery)
    }
    fn record(&self, client_id: &str, change: Change) -> Ticket {
        self.inner.record(client_id, change);
        self.ticket()
    }
    fn committed(&self, ticket: Ticket) -> RouterFuture<'_, ()> {
        let mut released = self.released.subscribe();
        Box::pin(async move {
            let _ = released.wait_for(|r| *r >= ticket).await;
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_subscribe_takes_effect_while_an_earlier_acknowledgement_waits_for_its_commit() {
    let broker = Broker::new(BrokerConfig::default());
    let gated = Arc::new(Gated {
        inner: broker.clone(),
        next: AtomicU64::new(0),
        released: watch::channel(0).0,
    });
    let mut pair = Pair::with_router(broker, Arc::clone(&gated) as Arc<dyn Router>);
    let b = pair.add(v5_kept("b", 3600));
    let a = pair.add(v5("a"));
    pair.connect(b).await;
    pair.connect(a).await;
    gated.release_all();
    pair.settle();
    assert!(pair.state(b).is_connected() && pair.state(a).is_connected());

    // B's QoS 1 publication waits for its commit; B subscribes meanwhile; A publishes before
    // B has any answer.
    publish(&mut pair, b, "b/log", "1", QoS::AtLeastOnce, false);
    sub(&mut pair, b, "lamp/+", QoS::AtLeastOnce);
    assert!(
        !pair
            .client(b)
            .events
            .iter()
            .any(|e| matches!(e, Action::SubscribeComplete { .. })),
        "SUBACK before the commit"
    );
    publish(&mut pair, a, "lamp/1", "on", QoS::AtMostOnce, false);
    gated.release_all();
    pair.settle();
    assert!(
        pair.client(b)
            .events
            .iter()
            .any(|e| matches!(e, Action::SubscribeComplete { result: Ok(_), .. }))
    );
    assert_eq!(payloads(pair.client(b)), ["on"]);
}
