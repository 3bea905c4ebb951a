//! A small tokio MQTT client: a thin driver around the codec's sans-I/O
//! [`ClientState`] over a [`TcpStream`].
//!
//! The device simulator uses it for every simulated plug, and the load generator is meant to
//! reuse it, so it stays general: connect options (protocol version, client id, keep alive,
//! credentials, last will, clean start), publications at QoS 0/1/2 whose completion can be
//! awaited (or pipelined), subscriptions, a stream of [`Event`]s, and automatic reconnection
//! with exponential backoff (subscriptions are made again when the server did not keep the
//! session).
//!
//! # Flow
//!
//! [`Client::connect`] spawns one task per client that owns the socket, the session state, the
//! decoder and the timer. The [`Client`] handle (cheap to clone) sends commands to it over a
//! bounded channel; every packet-level decision (packet ids, acknowledgements, keep alive,
//! retransmission after reconnect) is the state machine's. The task delivers application
//! messages and connection changes on a bounded channel read through [`Events`]. When the
//! application does not read events fast enough the task keeps them in a small backlog and stops
//! reading the socket (TCP back-pressure), but keeps serving commands, so an application that
//! publishes from its event loop never deadlocks against its own client.
//!
//! ```no_run
//! use switchboard_tools::mqtt_client::{Client, ClientOptions, Event, QoS};
//!
//! # async fn demo() -> Result<(), switchboard_tools::mqtt_client::Error> {
//! let (client, mut events) = Client::connect(ClientOptions::new("127.0.0.1:1883", "demo")).await?;
//! client.subscribe(&[("tele/+/LWT", QoS::AtLeastOnce)]).await?;
//! client.publish("cmnd/kitchen/POWER", "ON", QoS::AtLeastOnce, false).await?.completed().await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(m) = event {
//!         println!("{} {:?}", m.topic, m.payload);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use switchboard_mqtt::client::{Action, ClientError, ClientState, CloseReason};
use switchboard_mqtt::{ByteString, Connect, Decoder, LastWill, PacketId, Properties};
pub use switchboard_mqtt::{
    Bytes, ProtocolVersion, QoS, ReasonCode, RetainHandling, SubscriptionOptions,
};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connection could not be made or broke.
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// The server address.
        addr: String,
        /// The I/O error.
        source: io::Error,
    },
    /// No CONNACK (or no TCP connection) within the connect timeout.
    #[error("no answer from {0} within the connect timeout")]
    ConnectTimeout(String),
    /// The server refused the connection.
    #[error("the server refused the connection: {0:?}")]
    Refused(ReasonCode),
    /// The connection closed before the first CONNACK.
    #[error("the connection closed before CONNACK: {0:?}")]
    Closed(CloseReason),
    /// The session state machine refused the command.
    #[error(transparent)]
    Protocol(#[from] ClientError),
    /// The server answered with a failure reason code (QoS 1/2 ack, SUBACK).
    #[error("the server answered {0:?}")]
    Failed(ReasonCode),
    /// The client task has stopped (after [`Client::disconnect`] or [`Client::abort`]).
    #[error("the client has stopped")]
    Stopped,
}

/// How to reconnect after the connection is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// First delay after a failure.
    pub min_delay: Duration,
    /// The delay doubles after each failed attempt, up to this.
    pub max_delay: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// A last will: published by the server when the client goes away without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag (availability topics are retained).
    pub retain: bool,
}

/// Everything needed to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server, `host:port`.
    pub addr: String,
    /// Client identifier (empty: the server assigns one; v3.1.1 then needs `clean_start`).
    pub client_id: String,
    /// Protocol version (default 3.1.1, which every broker speaks).
    pub protocol: ProtocolVersion,
    /// Keep alive in seconds, 0 disables it (default 30).
    pub keep_alive: u16,
    /// Clean Session / Clean Start (default true).
    pub clean_start: bool,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Last will.
    pub will: Option<Will>,
    /// Reconnect after a lost connection; `None` ends the client instead (default: reconnect).
    pub reconnect: Option<Reconnect>,
    /// Limit for the TCP connection plus CONNACK (default 10 s).
    pub connect_timeout: Duration,
    /// Largest packet accepted from the server (default 1 MiB).
    pub max_packet_size: u32,
    /// Capacity of the event channel (default 256).
    pub event_capacity: usize,
}

impl ClientOptions {
    /// Options for `addr` (`host:port`) and `client_id`, defaults otherwise.
    #[must_use]
    pub fn new(addr: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            client_id: client_id.into(),
            protocol: ProtocolVersion::V3_1_1,
            keep_alive: 30,
            clean_start: true,
            username: None,
            password: None,
            will: None,
            reconnect: Some(Reconnect::default()),
            connect_timeout: Duration::from_secs(10),
            max_packet_size: 1 << 20,
            event_capacity: 256,
        }
    }

    /// Sets the last will.
    #[must_use]
    pub fn with_will(mut self, will: Will) -> Self {
        self.will = Some(will);
        self
    }

    /// Sets user name and password.
    #[must_use]
    pub fn with_credentials(mut self, username: Option<String>, password: Option<String>) -> Self {
        self.username = username;
        self.password = password;
        self
    }

    fn to_connect(&self) -> Connect {
        let mut connect = Connect::new(self.protocol, self.client_id.as_str());
        connect.keep_alive = self.keep_alive;
        connect.clean_start = self.clean_start;
        connect.username = self.username.as_deref().map(ByteString::from);
        connect.password = self.password.clone().map(Bytes::from);
        connect.will = self.will.as_ref().map(|w| LastWill {
            topic: ByteString::from(w.topic.as_str()),
            payload: w.payload.clone(),
            qos: w.qos,
            retain: w.retain,
            properties: Properties::default(),
        });
        connect
    }
}

/// An application message received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic (aliases resolved).
    pub topic: ByteString,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was delivered with.
    pub qos: QoS,
    /// Whether the server sent it from its retained store.
    pub retain: bool,
}

/// What the client task reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection (the first or a reconnection) was accepted.
    Connected {
        /// Whether the server resumed the session.
        session_present: bool,
    },
    /// The connection was lost; a reconnection follows when [`ClientOptions::reconnect`] is set.
    Disconnected {
        /// Why, in words.
        reason: String,
    },
    /// An application message.
    Message(Message),
}

/// The receiving side of a client: connection changes and messages, in order.
#[derive(Debug)]
pub struct Events {
    /// Closed by the task when it ends; then `recv` yields `None`.
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next message, skipping connection events; `None` once the client has stopped.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            if let Event::Message(m) = self.rx.recv().await? {
                return Some(m);
            }
        }
    }
}

/// A publication handed to the session; await [`Publication::completed`] for its
/// acknowledgement.
#[derive(Debug)]
pub struct Publication {
    /// `None` for QoS 0 (complete once written); the task answers when the ack arrives.
    done: Option<oneshot::Receiver<Result<(), Error>>>,
}

impl Publication {
    /// Waits until the server acknowledged it (PUBACK for QoS 1, PUBCOMP for QoS 2; QoS 0 is
    /// complete once written to the socket). QoS 1/2 publications survive reconnections.
    ///
    /// # Errors
    /// [`Error::Failed`] when the server's ack carried a failure code, [`Error::Stopped`] when
    /// the client stopped first.
    pub async fn completed(self) -> Result<(), Error> {
        match self.done {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or(Err(Error::Stopped)),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

#[derive(Debug)]
enum Command {
    Publish {
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        accepted: Reply<Option<oneshot::Receiver<Result<(), Error>>>>,
    },
    Subscribe {
        filters: Vec<(ByteString, SubscriptionOptions)>,
        reply: Reply<Vec<ReasonCode>>,
    },
    Unsubscribe {
        filters: Vec<ByteString>,
        reply: Reply<Vec<ReasonCode>>,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
    Abort,
}

/// A handle to a running client; clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// Commands to the client task; the task ends when every handle is dropped.
    tx: mpsc::Sender<Command>,
}

impl Client {
    /// Connects and waits for the first CONNACK, then keeps the connection up in a background
    /// task (reconnecting according to [`ClientOptions::reconnect`]).
    ///
    /// # Errors
    /// The first connection failed: TCP error, timeout, or refused by the server.
    pub async fn connect(options: ClientOptions) -> Result<(Self, Events), Error> {
        let (tx, rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let mut task = Task::new(options, events_tx);
        let stream = task.first_connection().await?;
        tokio::spawn(task.run(stream, rx));
        Ok((Self { tx }, Events { rx: events_rx }))
    }

    /// Publishes a message; returns once the session took it. QoS 0 needs a connection; QoS 1
    /// and 2 are kept (and sent after a reconnection) until acknowledged.
    ///
    /// # Errors
    /// [`Error::Protocol`] when the state machine refuses it (not connected for QoS 0, QoS or
    /// retain not supported, too large), [`Error::Stopped`].
    pub async fn publish(
        &self,
        topic: impl Into<ByteString>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<Publication, Error> {
        let (accepted, rx) = oneshot::channel();
        self.send(Command::Publish {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            accepted,
        })
        .await?;
        let done = rx.await.unwrap_or(Err(Error::Stopped))?;
        Ok(Publication { done })
    }

    /// Subscribes and waits for SUBACK; returns one granted QoS / reason code per filter. The
    /// client makes the subscriptions again after a reconnection without a session.
    ///
    /// # Errors
    /// [`Error::Protocol`] (not connected, connection lost first), [`Error::Stopped`].
    pub async fn subscribe(&self, filters: &[(&str, QoS)]) -> Result<Vec<ReasonCode>, Error> {
        let filters: Vec<_> = filters
            .iter()
            .map(|(f, q)| (*f, SubscriptionOptions::qos(*q)))
            .collect();
        self.subscribe_with(&filters).await
    }

    /// [`Client::subscribe`] with full subscription options (v5: No Local, Retain As
    /// Published, Retain Handling).
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub async fn subscribe_with(
        &self,
        filters: &[(&str, SubscriptionOptions)],
    ) -> Result<Vec<ReasonCode>, Error> {
        let (reply, rx) = oneshot::channel();
        let filters = filters
            .iter()
            .map(|(f, o)| (ByteString::from(*f), *o))
            .collect();
        self.send(Command::Subscribe { filters, reply }).await?;
        rx.await.unwrap_or(Err(Error::Stopped))
    }

    /// Unsubscribes and waits for UNSUBACK (codes are empty before v5).
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub async fn unsubscribe(&self, filters: &[&str]) -> Result<Vec<ReasonCode>, Error> {
        let (reply, rx) = oneshot::channel();
        let filters = filters.iter().map(|f| ByteString::from(*f)).collect();
        self.send(Command::Unsubscribe { filters, reply }).await?;
        rx.await.unwrap_or(Err(Error::Stopped))
    }

    /// Sends DISCONNECT (the server discards the will), closes the connection and stops the
    /// client. Returns when done; a stopped client is not an error.
    pub async fn disconnect(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Disconnect { done }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Drops the connection without DISCONNECT, as a crash or a power cut would (the server
    /// publishes the will), and stops the client.
    pub async fn abort(&self) {
        let _ = self.tx.send(Command::Abort).await;
    }

    async fn send(&self, command: Command) -> Result<(), Error> {
        self.tx.send(command).await.map_err(|_| Error::Stopped)
    }
}

/// How one connection ended.
enum End {
    /// Lost or closed by the protocol: reconnect if configured.
    Lost(String),
    /// The application asked to stop (or dropped every handle).
    Stop,
}

/// The client task's state. Lives in the spawned task only.
struct Task {
    options: ClientOptions,
    state: ClientState,
    decoder: Decoder,
    /// Origin of the state machine's clock.
    origin: Instant,
    timer: Option<Instant>,
    /// Events for the application; the receiver may be dropped (then events are discarded).
    events: mpsc::Sender<Event>,
    /// Events the channel had no room for; while non-empty the socket is not read.
    backlog: VecDeque<Event>,
    /// Completion senders of QoS 1/2 publications, by packet id; answered on completion.
    publishes: HashMap<PacketId, oneshot::Sender<Result<(), Error>>>,
    /// SUBSCRIBE and UNSUBSCRIBE awaiting their ack, by packet id.
    requests: HashMap<PacketId, Reply<Vec<ReasonCode>>>,
    /// Filters subscribed so far, made again after a reconnection without a session.
    subscriptions: Vec<(ByteString, SubscriptionOptions)>,
    /// Where encoded packets wait for the next write.
    out: BytesMut,
    /// Set when a Close action was seen.
    closed: Option<CloseReason>,
}

const BACKLOG_MAX: usize = 1024;

impl Task {
    fn new(options: ClientOptions, events: mpsc::Sender<Event>) -> Self {
        let state = ClientState::new(options.to_connect());
        let mut decoder = Decoder::new(options.max_packet_size);
        decoder.set_version(options.protocol);
        Self {
            options,
            state,
            decoder,
            origin: Instant::now(),
            timer: None,
            events,
            backlog: VecDeque::new(),
            publishes: HashMap::new(),
            requests: HashMap::new(),
            subscriptions: Vec::new(),
            out: BytesMut::new(),
            closed: None,
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Connects the first time, up to CONNACK, with errors reported to the caller.
    async fn first_connection(&mut self) -> Result<TcpStream, Error> {
        let deadline = Instant::now() + self.options.connect_timeout;
        let addr = self.options.addr.clone();
        let mut stream = tokio::time::timeout_at(deadline, TcpStream::connect(&addr))
            .await
            .map_err(|_| Error::ConnectTimeout(addr.clone()))?
            .map_err(|source| Error::Io {
                addr: addr.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        self.state.handle_connected(self.now());
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            self.process_actions();
            if let Some(reason) = self.closed.take() {
                self.state.handle_connection_lost();
                return Err(match reason {
                    CloseReason::Refused(code) => Error::Refused(code),
                    other => Error::Closed(other),
                });
            }
            if self.state.is_connected() {
                self.flush(&mut stream).await.map_err(|source| Error::Io {
                    addr: addr.clone(),
                    source,
                })?;
                return Ok(stream);
            }
            self.flush(&mut stream).await.map_err(|source| Error::Io {
                addr: addr.clone(),
                source,
            })?;
            let n = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf))
                .await
                .map_err(|_| Error::ConnectTimeout(addr.clone()))?
                .map_err(|source| Error::Io {
                    addr: addr.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(Error::Io {
                    addr,
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.decode(&mut buf);
        }
    }

    async fn run(mut self, stream: TcpStream, mut commands: mpsc::Receiver<Command>) {
        let mut stream = Some(stream);
        let mut delay = self.options.reconnect.map(|r| r.min_delay);
        loop {
            let end = match stream.take() {
                Some(s) => self.serve(s, &mut commands).await,
                None => End::Lost(String::new()),
            };
            let reason = match end {
                End::Stop => break,
                End::Lost(reason) => reason,
            };
            self.state.handle_connection_lost();
            self.timer = None;
            self.process_actions();
            if !reason.is_empty() {
                self.emit(Event::Disconnected { reason });
                self.flush_backlog_now();
            }
            let Some(reconnect) = self.options.reconnect else {
                break;
            };
            let wait = delay.unwrap_or(reconnect.min_delay);
            let wake = Instant::now() + wait;
            // Wait for the backoff while still taking commands (QoS 1/2 publications queue).
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => break,
                    command = commands.recv() => match command {
                        None | Some(Command::Abort) => return,
                        Some(Command::Disconnect { done }) => {
                            let _ = done.send(());
                            return;
                        }
                        Some(other) => self.command(other),
                    },
                }
            }
            match self.reconnect().await {
                Ok(s) => {
                    stream = Some(s);
                    delay = Some(reconnect.min_delay);
                }
                Err(err) => {
                    tracing::debug!(addr = %self.options.addr, "reconnect failed: {err}");
                    delay = Some((wait * 2).min(reconnect.max_delay));
                }
            }
        }
    }

    async fn reconnect(&mut self) -> Result<TcpStream, Error> {
        let deadline = Instant::now() + self.options.connect_timeout;
        let addr = self.options.addr.clone();
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(&addr))
            .await
            .map_err(|_| Error::ConnectTimeout(addr.clone()))?
            .map_err(|source| Error::Io { addr, source })?;
        let _ = stream.set_nodelay(true);
        self.state.handle_connected(self.now());
        Ok(stream)
    }

    /// Serves one connection until it ends.
    async fn serve(
        &mut self,
        mut stream: TcpStream,
        commands: &mut mpsc::Receiver<Command>,
    ) -> End {
        let mut buf = BytesMut::with_capacity(8192);
        let connack_deadline = Instant::now() + self.options.connect_timeout;
        loop {
            self.process_actions();
            if let Err(err) = self.flush(&mut stream).await {
                return End::Lost(format!("write failed: {err}"));
            }
            if let Some(reason) = self.closed.take() {
                let _ = stream.shutdown().await;
                return match reason {
                    CloseReason::ClientDisconnect => End::Stop,
                    other => End::Lost(format!("{other:?}")),
                };
            }
            let timer = if self.state.is_connected() {
                self.timer
            } else {
                Some(
                    self.timer
                        .map_or(connack_deadline, |t| t.min(connack_deadline)),
                )
            };
            let reading = self.backlog.is_empty();
            // A handle of its own, so the pending `reserve` does not borrow `self`.
            let events = self.events.clone();
            tokio::select! {
                read = stream.read_buf(&mut buf), if reading => match read {
                    Ok(0) => return End::Lost("connection closed by the server".into()),
                    Ok(_) => self.decode(&mut buf),
                    Err(err) => return End::Lost(format!("read failed: {err}")),
                },
                permit = events.reserve(), if !reading => {
                    match permit {
                        Ok(permit) => {
                            if let Some(event) = self.backlog.pop_front() {
                                permit.send(event);
                            }
                        }
                        Err(_) => self.backlog.clear(),
                    }
                }
                command = commands.recv() => match command {
                    None => {
                        self.state.disconnect();
                    }
                    Some(Command::Abort) => return End::Stop,
                    Some(Command::Disconnect { done }) => {
                        self.state.disconnect();
                        self.process_actions();
                        let _ = self.flush(&mut stream).await;
                        let _ = stream.shutdown().await;
                        let _ = done.send(());
                        return End::Stop;
                    }
                    Some(other) => self.command(other),
                },
                () = sleep_until_opt(timer) => {
                    if self.state.is_connected() || self.timer.is_some_and(|t| t <= Instant::now()) {
                        self.timer = None;
                        self.state.handle_timer(self.now());
                    } else {
                        return End::Lost("no CONNACK within the connect timeout".into());
                    }
                }
            }
        }
    }

    fn decode(&mut self, buf: &mut BytesMut) {
        loop {
            match self.decoder.decode(buf) {
                Ok(Some(packet)) => {
                    let now = self.now();
                    self.state.handle_packet(packet, now);
                }
                Ok(None) => return,
                Err(err) => {
                    tracing::debug!(addr = %self.options.addr, "undecodable packet: {err}");
                    self.state.handle_decode_error(&err);
                    buf.clear();
                    return;
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Publish {
                topic,
                payload,
                qos,
                retain,
                accepted,
            } => {
                match self
                    .state
                    .publish(topic, payload, qos, retain, Properties::default())
                {
                    Ok(Some(pid)) => {
                        let (tx, rx) = oneshot::channel();
                        self.publishes.insert(pid, tx);
                        let _ = accepted.send(Ok(Some(rx)));
                    }
                    Ok(None) => {
                        let _ = accepted.send(Ok(None));
                    }
                    Err(err) => {
                        let _ = accepted.send(Err(err.into()));
                    }
                }
            }
            Command::Subscribe { filters, reply } => {
                match self.state.subscribe(filters.clone(), Properties::default()) {
                    Ok(pid) => {
                        for (f, o) in filters {
                            match self.subscriptions.iter_mut().find(|(g, _)| *g == f) {
                                Some(known) => known.1 = o,
                                None => self.subscriptions.push((f, o)),
                            }
                        }
                        self.requests.insert(pid, reply);
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err.into()));
                    }
                }
            }
            Command::Unsubscribe { filters, reply } => {
                self.subscriptions.retain(|(f, _)| !filters.contains(f));
                match self.state.unsubscribe(filters, Properties::default()) {
                    Ok(pid) => {
                        self.requests.insert(pid, reply);
                    }
                    Err(err) => {
                        let _ = reply.send(Err(err.into()));
                    }
                }
            }
            // Handled by the caller, which owns the stream.
            Command::Disconnect { .. } | Command::Abort => {}
        }
    }

    /// Runs the state machine's actions: encodes packets into `out`, arms the timer, answers
    /// waiters, queues events.
    fn process_actions(&mut self) {
        while let Some(action) = self.state.poll_action() {
            match action {
                Action::Send(packet) => {
                    if let Err(err) = packet.encode(self.state.protocol(), &mut self.out) {
                        tracing::warn!("cannot encode {:?}: {err}", packet.packet_type());
                    }
                }
                Action::ArmTimer { at } => {
                    self.timer = Some(self.origin + at);
                }
                Action::Connected { session_present } => {
                    if !session_present && !self.subscriptions.is_empty() {
                        let wire = self.subscriptions.clone();
                        // The answer carries nobody's reply; failures show in the log.
                        if let Err(err) = self.state.subscribe(wire, Properties::default()) {
                            tracing::warn!("cannot subscribe again: {err}");
                        }
                    }
                    self.emit(Event::Connected { session_present });
                }
                Action::Deliver(p) => {
                    let qos = p.qos();
                    self.emit(Event::Message(Message {
                        topic: p.topic,
                        payload: p.payload,
                        qos,
                        retain: p.retain,
                    }));
                }
                Action::PublishComplete { pid, result } => {
                    if let Some(tx) = self.publishes.remove(&pid) {
                        let _ = tx.send(result.map_err(Error::Failed));
                    }
                }
                Action::SubscribeComplete { pid, result }
                | Action::UnsubscribeComplete { pid, result } => {
                    if let Some(tx) = self.requests.remove(&pid) {
                        let _ = tx.send(result.map_err(Error::Protocol));
                    }
                }
                Action::Close { reason } => self.closed = Some(reason),
            }
        }
    }

    fn emit(&mut self, event: Event) {
        if !self.backlog.is_empty() {
            if self.backlog.len() < BACKLOG_MAX {
                self.backlog.push_back(event);
            }
            return;
        }
        match self.events.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(event)) => self.backlog.push_back(event),
        }
    }

    /// Between connections nothing is read, so the backlog can simply be retried.
    fn flush_backlog_now(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    return;
                }
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    return;
                }
            }
        }
    }

    async fn flush(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = stream.write_all(&self.out).await;
        self.out.clear();
        result
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
