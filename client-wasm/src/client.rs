//! The browser driver: runs the sans-I/O [`ClientState`] over a [`Socket`], with one
//! [`WakeTimer`] for every deadline (keep alive, CONNACK timeout, reconnect, offline expiry).
//!
//! Everything lives in one [`Inner`] behind `Rc<RefCell<_>>`, owned by the [`Client`] handles.
//! Socket, timer and window listeners hold only a `Weak` to it, so dropping the last `Client`
//! drops the socket, the worker and every closure. No borrow is held across an `.await`, and no
//! callback into user code happens while `Inner` is borrowed: messages and state changes go out
//! through channels, command results through one-shot replies ([`crate::chan`]).
//!
//! Flow of one event: socket/timer callback → `Inner::on_*` → feed `ClientState` → drain its
//! actions (send, arm timer, deliver, complete) → re-arm the timer for the earliest deadline.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use switchboard_mqtt::client::{Action, ClientError, ClientState, CloseReason};
use switchboard_mqtt::{
    ByteString, Bytes, BytesMut, Decoder, Packet, PacketId, Properties, Publish, QoS, ReasonCode,
    SubscriptionOptions,
};
use wasm_bindgen::prelude::*;
use web_sys::EventTarget;

use crate::chan::{self, Receiver, Reply as ReplyRx, ReplySender, Sender};
use crate::dom::{Listener, Socket, SocketEvent};
use crate::policy::{Backoff, Offer, OfflineQueue, UrlRotation, client_id};
use crate::timer::{TimerMode, WakeTimer};
use crate::{Error, Options};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
}

fn now() -> Duration {
    // Whole microseconds: `from_secs_f64` and its panics cost a kilobyte of wasm.
    Duration::from_micros((performance_now().max(0.0) * 1000.0) as u64)
}

/// An application message received from the broker (topic alias already resolved).
pub type Message = Publish;

/// A change of the connection, on [`Client::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// CONNACK accepted. `session_present: false` means the broker had no session: the client
    /// has resubscribed every subscription.
    Connected {
        /// Whether the broker resumed the session.
        session_present: bool,
    },
    /// A new connection attempt starts, to the URL at this index of [`Options::urls`].
    Reconnecting {
        /// Index of the URL tried.
        url_index: usize,
    },
    /// An established connection was lost; publications now queue (QoS 1/2) or drop (QoS 0).
    Offline,
    /// No connection; the next attempt starts after `delay` (sooner on the browser's
    /// `online` event or when the tab becomes visible).
    Waiting {
        /// Time until the next attempt.
        delay: Duration,
        /// Index of the URL it will try.
        url_index: usize,
    },
    /// A WebSocket closed (after `Offline`, or a failed attempt).
    Closed,
    /// Something went wrong that no caller awaits (refused reconnect, failed resubscription).
    Error(Error),
    /// [`Client::end`] was called, or the client gave up: no more events.
    Ended,
}

type Reply<T> = ReplySender<Result<T, Error>>;

/// A publication not yet completed.
#[derive(Debug)]
struct Job {
    topic: ByteString,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    properties: Properties,
    /// Not sent after this (offline expiry).
    deadline: Duration,
    /// The caller's outcome; answered exactly once by [`Job::finish`] (ack, expiry, drop,
    /// end), or dropped with the driver (the caller then sees [`Error::Closed`]).
    reply: Option<Reply<()>>,
}

impl Job {
    fn finish(mut self, result: Result<(), Error>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

/// A QoS 1/2 publication handed to the `ClientState`.
#[derive(Debug)]
struct InFlight {
    job: Job,
    /// PUBREL was sent: the broker owns the message (QoS 2 past PUBREC).
    released: bool,
}

/// A small map by packet id, in insertion order (which is send order, so requeueing keeps
/// it). A `Vec`: a few entries at most in a browser, and no extra hash table code in the wasm.
#[derive(Debug)]
struct PidMap<V>(Vec<(PacketId, V)>);

impl<V> Default for PidMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> PidMap<V> {
    fn insert(&mut self, pid: PacketId, value: V) {
        self.0.push((pid, value));
    }

    fn remove(&mut self, pid: PacketId) -> Option<V> {
        let i = self.0.iter().position(|(p, _)| *p == pid)?;
        Some(self.0.remove(i).1)
    }

    fn get_mut(&mut self, pid: PacketId) -> Option<&mut V> {
        self.0.iter_mut().find(|(p, _)| *p == pid).map(|(_, v)| v)
    }

    fn drain(&mut self) -> std::vec::Drain<'_, (PacketId, V)> {
        self.0.drain(..)
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A subscription the client keeps (and makes again when the broker lost the session).
#[derive(Debug)]
struct Sub {
    filter: ByteString,
    options: SubscriptionOptions,
    /// SUBACK granted it in the current session.
    acked: bool,
    /// Callers awaiting the SUBACK; kept across a lost connection (the filter is sent again),
    /// answered on SUBACK, failure or `end()`.
    waiters: Vec<Reply<QoS>>,
}

#[derive(Debug)]
enum Link {
    /// No socket; the next attempt is due at `at`.
    Waiting { at: Duration },
    /// A socket: opening, waiting for CONNACK (`connack_deadline` set), or connected.
    Socket {
        socket: Socket,
        connack_deadline: Option<Duration>,
    },
    /// Ended: nothing more happens.
    Ended,
}

/// The driver's state: one per [`Client`], shared by its handles, reached by callbacks through
/// a `Weak`. Never borrowed across an `.await`, never calling user code while borrowed.
#[derive(Debug)]
struct Inner {
    options: Options,
    client_id: String,
    /// The sans-I/O session. Replaced by a fresh one after a lost clean session.
    state: ClientState,
    decoder: Decoder,
    /// Bytes received and not yet decoded (cleared for each new socket).
    rx: BytesMut,
    /// Encoding buffer, reused for every packet sent.
    tx: BytesMut,
    link: Link,
    backoff: Backoff,
    rotation: UrlRotation,
    ever_connected: bool,
    /// `connect()` is waiting for the first CONNACK (dropped once answered).
    connect_reply: Option<Reply<()>>,
    /// Publications waiting for a connection (QoS 1/2 only), each with its deadline.
    queue: OfflineQueue<Job>,
    /// QoS 1/2 publications given to `state`, by packet id, in send order.
    in_flight: PidMap<InFlight>,
    /// Every subscription to keep, with callers awaiting SUBACK.
    subs: Vec<Sub>,
    /// SUBSCRIBE packet id → the filters it carried.
    sub_pids: PidMap<Vec<ByteString>>,
    /// Callers awaiting UNSUBACK; answered on UNSUBACK, a lost connection or `end()`.
    unsub_replies: PidMap<Reply<()>>,
    /// Unsubscribed while offline from a persistent session: sent when the session resumes.
    unsub_on_resume: Vec<ByteString>,
    /// The state machine's deadline (keep alive, CONNACK wait).
    keep_alive_at: Option<Duration>,
    /// One timer for every deadline; its worker and closures go with the driver.
    timer: WakeTimer,
    /// When the timer is armed to fire (absolute); `None` once it fired or was cancelled.
    armed_at: Option<Duration>,
    /// Senders of the message and event streams; `None` after `end()`, which ends the streams.
    messages: Option<Sender<Message>>,
    events: Option<Sender<ConnectionEvent>>,
    /// Window `online` and document `visibilitychange`: reconnect at once. Removed on drop.
    wake_listeners: Vec<Listener>,
    /// Handed to each new socket's callbacks.
    this: Weak<RefCell<Inner>>,
}

/// A browser MQTT client. Cheap to clone (a shared handle); the connection, its socket, its
/// worker timer and every closure go away when the last handle is dropped (which disconnects
/// cleanly, like [`Client::end`]).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Rc<RefCell<Inner>>,
    streams: Rc<RefCell<Streams>>,
}

#[derive(Debug, Default)]
struct Streams {
    messages: Option<Receiver<Message>>,
    events: Option<Receiver<ConnectionEvent>>,
}

impl Client {
    /// Connects to the first broker that accepts, and keeps the connection up from then on
    /// (reconnect with back-off, resubscription, offline queue).
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when [`Options::validate`] fails, [`Error::Refused`] when the
    /// broker refuses CONNECT (a wrong SCRAM password too), [`Error::AuthFailed`] when the
    /// broker does not prove itself in SCRAM-SHA-256, [`Error::Unreachable`] when every URL
    /// failed once.
    pub async fn connect(options: Options) -> Result<Self, Error> {
        Self::connect_with_timer(options, true).await
    }

    /// [`Client::connect`] with the worker timer (`true`) or the `setTimeout` fallback.
    #[doc(hidden)]
    pub async fn connect_with_timer(options: Options, worker: bool) -> Result<Self, Error> {
        options.validate()?;
        let (reply, connected) = chan::reply();
        let (msg_tx, msg_rx) = chan::unbounded();
        let (ev_tx, ev_rx) = chan::unbounded();
        let inner = Rc::new_cyclic(|this: &Weak<RefCell<Inner>>| {
            RefCell::new(Inner::new(
                options,
                worker,
                this.clone(),
                reply,
                msg_tx,
                ev_tx,
            ))
        });
        inner.borrow_mut().start();
        let client = Self {
            inner,
            streams: Rc::new(RefCell::new(Streams {
                messages: Some(msg_rx),
                events: Some(ev_rx),
            })),
        };
        match connected.await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }

    /// The stream of received messages. The first call takes it; later calls get `None`.
    /// Messages are buffered until it is taken.
    #[must_use]
    pub fn messages(&self) -> Option<Receiver<Message>> {
        self.streams.borrow_mut().messages.take()
    }

    /// The stream of connection changes. The first call takes it; later calls get `None`.
    #[must_use]
    pub fn events(&self) -> Option<Receiver<ConnectionEvent>> {
        self.streams.borrow_mut().events.take()
    }

    /// Whether the connection is up (CONNACK accepted).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.inner.borrow().state.is_connected()
    }

    /// The client identifier in use.
    #[must_use]
    pub fn client_id(&self) -> String {
        self.inner.borrow().client_id.clone()
    }

    /// Where the keep-alive timer runs (a Worker, or the `setTimeout` fallback).
    #[must_use]
    pub fn timer_mode(&self) -> TimerMode {
        self.inner.borrow().timer.mode()
    }

    /// Subscribes to `filter`, and keeps the subscription across reconnects. Resolves with the
    /// granted QoS when SUBACK arrives; made while offline, it goes out on reconnect.
    ///
    /// # Errors
    /// [`Error::Rejected`] with the SUBACK failure code, [`Error::Closed`] after `end()`.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<QoS, Error> {
        let rx = self.subscribe_many(&[(filter, SubscriptionOptions::qos(qos))]);
        rx.into_iter()
            .next()
            .ok_or(Error::Closed)?
            .await
            .unwrap_or(Err(Error::Closed))
    }

    /// Subscribes to several filters in one SUBSCRIBE; one answer per filter.
    #[must_use]
    pub fn subscribe_many(
        &self,
        filters: &[(&str, SubscriptionOptions)],
    ) -> Vec<ReplyRx<Result<QoS, Error>>> {
        self.inner.borrow_mut().subscribe(filters)
    }

    /// Unsubscribes from `filter` (and stops resubscribing it).
    ///
    /// # Errors
    /// [`Error::Rejected`] with an UNSUBACK failure code (v5), [`Error::Closed`].
    pub async fn unsubscribe(&self, filter: &str) -> Result<(), Error> {
        self.start_unsubscribe(filter)
            .await
            .unwrap_or(Err(Error::Closed))
    }

    /// Sends UNSUBSCRIBE now; the receiver gets the answer. The JavaScript API awaits only the
    /// receiver, so a pending promise does not keep the client alive.
    pub(crate) fn start_unsubscribe(&self, filter: &str) -> ReplyRx<Result<(), Error>> {
        self.inner.borrow_mut().unsubscribe(filter)
    }

    /// Publishes a message. QoS 0 resolves once written and fails with [`Error::Dropped`]
    /// while offline; QoS 1/2 resolve on PUBACK/PUBCOMP, wait while offline, and fail with
    /// [`Error::Expired`] when still unsent after [`Options::offline_expiry`].
    ///
    /// # Errors
    /// See above; also [`Error::Rejected`] (ack with a failure code), [`Error::Protocol`]
    /// (QoS or retain not supported, packet too large), [`Error::Closed`].
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), Error> {
        self.publish_with(topic, payload, qos, retain, Properties::default())
            .await
    }

    /// [`Client::publish`] with v5 PUBLISH properties.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub async fn publish_with(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
        properties: Properties,
    ) -> Result<(), Error> {
        self.start_publish(topic, payload.into(), qos, retain, properties)
            .await
            .unwrap_or(Err(Error::Closed))
    }

    /// Publishes now (or queues); the receiver gets the outcome.
    pub(crate) fn start_publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        properties: Properties,
    ) -> ReplyRx<Result<(), Error>> {
        self.inner.borrow_mut().publish(Job {
            topic: ByteString::from(topic),
            payload,
            qos,
            retain,
            properties,
            deadline: Duration::ZERO,
            reply: None,
        })
    }

    /// Sends DISCONNECT, closes the socket, fails what is pending with [`Error::Closed`] and
    /// ends both streams. The will is not published (normal disconnection).
    pub fn end(&self) {
        self.inner.borrow_mut().end();
    }
}

impl Inner {
    fn new(
        options: Options,
        worker: bool,
        this: Weak<RefCell<Self>>,
        reply: Reply<()>,
        messages: Sender<Message>,
        events: Sender<ConnectionEvent>,
    ) -> Self {
        let client_id = options
            .client_id
            .clone()
            .unwrap_or_else(|| client_id(get_random_values));
        let state = options.client_state(&client_id, get_random_values);
        let t = this.clone();
        let on_fire = move || with(&t, Self::on_timer);
        let timer = if worker {
            WakeTimer::new(on_fire)
        } else {
            WakeTimer::new_fallback(on_fire)
        };
        let mut wake_listeners = Vec::new();
        let t = this.clone();
        let global: EventTarget = js_sys::global().unchecked_into();
        wake_listeners.push(Listener::new(&global, "online", move |_| {
            with(&t, Self::wake_up);
        }));
        if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
            let t = this.clone();
            let d = doc.clone();
            wake_listeners.push(Listener::new(&doc, "visibilitychange", move |_| {
                if d.visibility_state() == web_sys::VisibilityState::Visible {
                    with(&t, Self::wake_up);
                }
            }));
        }
        Self {
            rotation: UrlRotation::new(options.urls.len()),
            backoff: options.backoff(),
            queue: OfflineQueue::new(options.offline_queue_max),
            state,
            decoder: Decoder::new(options.max_packet_size),
            options,
            client_id,
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            link: Link::Waiting { at: Duration::ZERO },
            ever_connected: false,
            connect_reply: Some(reply),
            in_flight: PidMap::default(),
            subs: Vec::new(),
            sub_pids: PidMap::default(),
            unsub_replies: PidMap::default(),
            unsub_on_resume: Vec::new(),
            keep_alive_at: None,
            timer,
            armed_at: None,
            messages: Some(messages),
            events: Some(events),
            wake_listeners,
            this,
        }
    }

    fn emit(&self, event: ConnectionEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// Opens a socket to the current URL.
    fn start(&mut self) {
        let now = now();
        let index = self.rotation.current();
        if self.ever_connected || self.rotation.rounds_failed() > 0 || index > 0 {
            self.emit(ConnectionEvent::Reconnecting { url_index: index });
        }
        let t = self.this.clone();
        match Socket::open(&self.options.urls[index], move |ev| {
            with(&t, |inner| inner.on_socket(ev));
        }) {
            Ok(socket) => {
                self.link = Link::Socket {
                    socket,
                    connack_deadline: Some(now + self.options.connect_timeout),
                };
            }
            Err(_) => self.attempt_failed(now),
        }
        self.rearm();
    }

    fn on_socket(&mut self, event: SocketEvent) {
        let now = now();
        match event {
            SocketEvent::Open => {
                self.rx.clear();
                self.decoder = Decoder::new(self.options.max_packet_size);
                self.decoder.set_version(self.state.protocol());
                self.state.handle_connected(now);
            }
            SocketEvent::Data(bytes) => {
                let start = self.rx.len();
                self.rx.resize(start + bytes.length() as usize, 0);
                bytes.copy_to(&mut self.rx[start..]);
                loop {
                    match self.decoder.decode(&mut self.rx) {
                        Ok(Some(packet)) => {
                            self.state.handle_packet(packet, now);
                            self.drain(now);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            self.state.handle_decode_error(&e);
                            break;
                        }
                    }
                    if !matches!(self.link, Link::Socket { .. }) {
                        break;
                    }
                }
            }
            SocketEvent::Closed => {
                if matches!(self.link, Link::Socket { .. }) {
                    self.socket_gone(now);
                }
            }
        }
        self.drain(now);
        self.rearm();
    }

    fn on_timer(&mut self) {
        let now = now();
        self.armed_at = None;
        match &self.link {
            Link::Waiting { at } if *at <= now => self.start(),
            Link::Socket {
                connack_deadline: Some(d),
                ..
            } if *d <= now => {
                self.state.handle_connection_lost();
                self.drain(now);
                self.socket_gone(now);
            }
            _ => {}
        }
        if self.keep_alive_at.is_some_and(|at| at <= now) {
            self.keep_alive_at = None;
            self.state.handle_timer(now);
            self.drain(now);
        }
        for job in self.queue.expire(now) {
            job.finish(Err(Error::Expired));
        }
        self.rearm();
    }

    /// The browser is back online or the tab is visible again: retry now instead of waiting
    /// for the back-off, and check the keep alive (timers may have been late).
    fn wake_up(&mut self) {
        if let Link::Waiting { at } = &mut self.link {
            *at = Duration::ZERO;
        }
        self.on_timer();
    }

    /// Drains the state machine's actions.
    fn drain(&mut self, now: Duration) {
        while let Some(action) = self.state.poll_action() {
            match action {
                Action::Send(packet) => self.send(&packet),
                Action::ArmTimer { at } => self.keep_alive_at = Some(at),
                Action::Connected { session_present } => self.on_connected(now, session_present),
                Action::Deliver(publish) => {
                    if let Some(tx) = &self.messages {
                        let _ = tx.send(publish);
                    }
                }
                Action::PublishComplete { pid, result } => {
                    if let Some(f) = self.in_flight.remove(pid) {
                        f.job.finish(result.map_err(Error::Rejected));
                    }
                }
                Action::SubscribeComplete { pid, result } => self.on_suback(pid, result),
                Action::UnsubscribeComplete { pid, result } => {
                    if let Some(reply) = self.unsub_replies.remove(pid) {
                        let result = match result {
                            Ok(codes) => match codes.iter().find(|c| c.is_error()) {
                                Some(c) => Err(Error::Rejected(*c)),
                                None => Ok(()),
                            },
                            // The filter is already forgotten locally; a clean session drops
                            // it anyway, a persistent one gets the UNSUBSCRIBE on resume.
                            Err(_) => Ok(()),
                        };
                        let _ = reply.send(result);
                    }
                }
                Action::Close { reason } => self.on_close(now, reason),
            }
        }
    }

    fn send(&mut self, packet: &Packet) {
        if let Packet::PubRel(rel) = packet
            && let Some(f) = self.in_flight.get_mut(rel.pid)
        {
            f.released = true;
        }
        let Link::Socket { socket, .. } = &self.link else {
            return;
        };
        self.tx.clear();
        if packet.encode(self.state.protocol(), &mut self.tx).is_ok() {
            socket.send(&self.tx);
        }
    }

    fn on_connected(&mut self, now: Duration, session_present: bool) {
        if let Link::Socket {
            connack_deadline, ..
        } = &mut self.link
        {
            *connack_deadline = None;
        }
        self.backoff.on_connected(now);
        self.rotation.on_connected();
        self.ever_connected = true;
        if let Some(reply) = self.connect_reply.take() {
            let _ = reply.send(Ok(()));
        }
        self.emit(ConnectionEvent::Connected { session_present });
        if !session_present {
            for sub in &mut self.subs {
                sub.acked = false;
            }
            self.unsub_on_resume.clear();
        }
        let unsubs = std::mem::take(&mut self.unsub_on_resume);
        if !unsubs.is_empty() {
            let _ = self.state.unsubscribe(unsubs, Properties::default());
        }
        let pending: Vec<_> = self
            .subs
            .iter()
            .filter(|s| !s.acked)
            .map(|s| (s.filter.clone(), s.options))
            .collect();
        if !pending.is_empty() {
            self.send_subscribe(pending);
        }
        let (live, expired) = self.queue.drain(now);
        for job in expired {
            job.finish(Err(Error::Expired));
        }
        for (_, job) in live {
            self.hand_over(job);
        }
    }

    fn send_subscribe(&mut self, filters: Vec<(ByteString, SubscriptionOptions)>) {
        let names: Vec<_> = filters.iter().map(|(f, _)| f.clone()).collect();
        match self.state.subscribe(filters, Properties::default()) {
            Ok(pid) => self.sub_pids.insert(pid, names),
            // Not connected: goes out on the next connection.
            Err(ClientError::NotConnected) => {}
            Err(e) => {
                for name in names {
                    self.fail_sub(&name, Error::Protocol(e));
                }
            }
        }
    }

    fn fail_sub(&mut self, filter: &str, error: Error) {
        if let Some(i) = self.subs.iter().position(|s| s.filter == filter) {
            for w in self.subs.remove(i).waiters {
                let _ = w.send(Err(error.clone()));
            }
        }
    }

    fn on_suback(&mut self, pid: PacketId, result: Result<Vec<ReasonCode>, ClientError>) {
        let Some(filters) = self.sub_pids.remove(pid) else {
            return;
        };
        let codes = match result {
            Ok(codes) => codes,
            // Lost before SUBACK: stays unacknowledged and goes out again on reconnect.
            Err(ClientError::ConnectionLost) => return,
            Err(e) => {
                for f in filters {
                    self.fail_sub(&f, Error::Protocol(e));
                }
                return;
            }
        };
        for (i, filter) in filters.iter().enumerate() {
            let code = codes
                .get(i)
                .copied()
                .unwrap_or(ReasonCode::UnspecifiedError);
            let granted = match code {
                ReasonCode::Success => QoS::AtMostOnce,
                ReasonCode::GrantedQoS1 => QoS::AtLeastOnce,
                ReasonCode::GrantedQoS2 => QoS::ExactlyOnce,
                code => {
                    let had_waiters = self
                        .subs
                        .iter()
                        .any(|s| s.filter == *filter && !s.waiters.is_empty());
                    if !had_waiters {
                        self.emit(ConnectionEvent::Error(Error::Rejected(code)));
                    }
                    self.fail_sub(filter, Error::Rejected(code));
                    continue;
                }
            };
            if let Some(sub) = self.subs.iter_mut().find(|s| s.filter == *filter) {
                sub.acked = true;
                for w in sub.waiters.drain(..) {
                    let _ = w.send(Ok(granted));
                }
            }
        }
    }

    fn subscribe(
        &mut self,
        filters: &[(&str, SubscriptionOptions)],
    ) -> Vec<ReplyRx<Result<QoS, Error>>> {
        let mut receivers = Vec::with_capacity(filters.len());
        if matches!(self.link, Link::Ended) {
            for _ in filters {
                let (tx, rx) = chan::reply();
                let _ = tx.send(Err(Error::Closed));
                receivers.push(rx);
            }
            return receivers;
        }
        let mut to_send = Vec::with_capacity(filters.len());
        for &(filter, options) in filters {
            let (tx, rx) = chan::reply();
            receivers.push(rx);
            self.unsub_on_resume.retain(|f| f != filter);
            let filter = ByteString::from(filter);
            match self.subs.iter_mut().find(|s| s.filter == filter) {
                Some(sub) => {
                    sub.options = options;
                    sub.acked = false;
                    sub.waiters.push(tx);
                }
                None => self.subs.push(Sub {
                    filter: filter.clone(),
                    options,
                    acked: false,
                    waiters: vec![tx],
                }),
            }
            to_send.push((filter, options));
        }
        if self.state.is_connected() {
            self.send_subscribe(to_send);
            self.drain(now());
            self.rearm();
        }
        receivers
    }

    fn unsubscribe(&mut self, filter: &str) -> ReplyRx<Result<(), Error>> {
        let (tx, rx) = chan::reply();
        if matches!(self.link, Link::Ended) {
            let _ = tx.send(Err(Error::Closed));
            return rx;
        }
        if let Some(i) = self.subs.iter().position(|s| s.filter == filter) {
            for w in self.subs.remove(i).waiters {
                let _ = w.send(Err(Error::Closed));
            }
        }
        let filter = ByteString::from(filter);
        match self
            .state
            .unsubscribe(vec![filter.clone()], Properties::default())
        {
            Ok(pid) => {
                self.unsub_replies.insert(pid, tx);
                self.drain(now());
                self.rearm();
            }
            Err(_) => {
                if !self.options.clean_start {
                    self.unsub_on_resume.push(filter);
                }
                let _ = tx.send(Ok(()));
            }
        }
        rx
    }

    fn publish(&mut self, mut job: Job) -> ReplyRx<Result<(), Error>> {
        let (tx, rx) = chan::reply();
        job.reply = Some(tx);
        let now = now();
        job.deadline = now + self.options.offline_expiry;
        if matches!(self.link, Link::Ended) {
            job.finish(Err(Error::Closed));
        } else if self.state.is_connected() {
            self.hand_over(job);
            self.drain(now);
        } else {
            match self.queue.offer(job.qos, job.deadline, job) {
                Offer::Queued => {}
                Offer::Dropped(job) => job.finish(Err(Error::Dropped)),
            }
        }
        self.rearm();
        rx
    }

    /// Gives a publication to the state machine (connected).
    fn hand_over(&mut self, job: Job) {
        match self.state.publish(
            job.topic.clone(),
            job.payload.clone(),
            job.qos,
            job.retain,
            job.properties.clone(),
        ) {
            Ok(None) => job.finish(Ok(())),
            Ok(Some(pid)) => {
                self.in_flight.insert(
                    pid,
                    InFlight {
                        job,
                        released: false,
                    },
                );
            }
            Err(ClientError::NotConnected) => job.finish(Err(Error::Dropped)),
            Err(e) => job.finish(Err(Error::Protocol(e))),
        }
    }

    fn on_close(&mut self, now: Duration, reason: CloseReason) {
        match reason {
            CloseReason::ClientDisconnect => return,
            CloseReason::Refused(code) | CloseReason::AuthFailed(code) => {
                let error = match reason {
                    CloseReason::AuthFailed(_) => Error::AuthFailed(code),
                    _ => Error::Refused(code),
                };
                if let Some(reply) = self.connect_reply.take() {
                    let _ = reply.send(Err(error));
                    self.end();
                    return;
                }
                self.emit(ConnectionEvent::Error(error));
            }
            CloseReason::ProtocolError(code) | CloseReason::ServerDisconnect(code) => {
                if code.is_error() {
                    self.emit(ConnectionEvent::Error(Error::Rejected(code)));
                }
            }
            CloseReason::KeepAliveTimeout => {}
        }
        if matches!(self.link, Link::Socket { .. }) {
            self.socket_gone(now);
        }
    }

    /// The socket closed (or must be closed): drop it and plan the next attempt.
    fn socket_gone(&mut self, now: Duration) {
        let was_connected = matches!(
            self.link,
            Link::Socket {
                connack_deadline: None,
                ..
            }
        );
        // Dropping the socket closes it and removes its listeners.
        self.link = Link::Waiting { at: now };
        self.keep_alive_at = None;
        self.state.handle_connection_lost();
        self.drain(now);
        if self.options.clean_start {
            self.restart_clean_session(now);
        }
        if was_connected {
            self.emit(ConnectionEvent::Offline);
            self.emit(ConnectionEvent::Closed);
            self.backoff.on_disconnected(now);
            let delay = self.backoff.next_delay(js_sys::Math::random());
            self.wait(now, delay);
        } else {
            self.emit(ConnectionEvent::Closed);
            self.attempt_failed(now);
        }
    }

    /// An attempt failed before CONNACK: next URL at once, or back off after a whole round.
    fn attempt_failed(&mut self, now: Duration) {
        let round_done = self.rotation.on_failure();
        if round_done
            && !self.ever_connected
            && let Some(reply) = self.connect_reply.take()
        {
            let _ = reply.send(Err(Error::Unreachable));
            self.end();
            return;
        }
        let delay = if round_done {
            self.backoff.next_delay(js_sys::Math::random())
        } else {
            Duration::ZERO
        };
        self.wait(now, delay);
    }

    fn wait(&mut self, now: Duration, delay: Duration) {
        self.link = Link::Waiting { at: now + delay };
        self.emit(ConnectionEvent::Waiting {
            delay,
            url_index: self.rotation.current(),
        });
    }

    /// Clean sessions: the broker forgets everything on reconnect, and `ClientState` would
    /// resend unacknowledged publications however old. Start a fresh state instead and put
    /// them back in the offline queue with their original deadline, so stale ones expire.
    /// QoS 2 past PUBREC is already owned by the broker: it completes.
    fn restart_clean_session(&mut self, now: Duration) {
        self.state = self
            .options
            .client_state(&self.client_id, get_random_values);
        self.sub_pids.clear();
        self.unsub_replies.clear();
        for (_, f) in self.in_flight.drain() {
            if f.released {
                f.job.finish(Ok(()));
            } else if f.job.deadline <= now {
                f.job.finish(Err(Error::Expired));
            } else {
                let deadline = f.job.deadline;
                match self.queue.offer(f.job.qos, deadline, f.job) {
                    Offer::Queued => {}
                    Offer::Dropped(job) => job.finish(Err(Error::Dropped)),
                }
            }
        }
    }

    fn end(&mut self) {
        if matches!(self.link, Link::Ended) {
            return;
        }
        self.state.disconnect();
        let now = now();
        self.drain(now);
        self.link = Link::Ended;
        self.timer.cancel();
        self.keep_alive_at = None;
        let (live, expired) = self.queue.drain(now);
        for job in expired {
            job.finish(Err(Error::Expired));
        }
        for (_, job) in live {
            job.finish(Err(Error::Closed));
        }
        for (_, f) in self.in_flight.drain() {
            f.job.finish(Err(Error::Closed));
        }
        for sub in self.subs.drain(..) {
            for w in sub.waiters {
                let _ = w.send(Err(Error::Closed));
            }
        }
        for (_, reply) in self.unsub_replies.drain() {
            let _ = reply.send(Err(Error::Closed));
        }
        if let Some(reply) = self.connect_reply.take() {
            let _ = reply.send(Err(Error::Closed));
        }
        self.wake_listeners.clear();
        self.emit(ConnectionEvent::Closed);
        self.emit(ConnectionEvent::Ended);
        self.messages = None;
        self.events = None;
    }

    /// Arms the timer for the earliest deadline.
    fn rearm(&mut self) {
        let link_at = match &self.link {
            Link::Waiting { at } => Some(*at),
            Link::Socket {
                connack_deadline, ..
            } => *connack_deadline,
            Link::Ended => None,
        };
        let next = [link_at, self.keep_alive_at, self.queue.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        // The keep-alive deadline moves later with every packet: a timer armed for an earlier
        // time is left alone (it fires, finds nothing due, and re-arms), so a busy connection
        // posts to the worker once per interval rather than once per packet.
        if let (Some(armed), Some(at)) = (self.armed_at, next)
            && armed <= at
        {
            return;
        }
        if next.is_none() && self.armed_at.is_none() {
            return;
        }
        self.armed_at = next;
        match next {
            Some(at) => {
                let ms = at.saturating_sub(now()).as_secs_f64() * 1000.0;
                // +1 ms: timers may fire a little early relative to performance.now().
                self.timer.arm(ms.ceil() + 1.0);
            }
            None => self.timer.cancel(),
        }
    }
}

impl Drop for Inner {
    /// The last [`Client`] handle is gone: disconnect cleanly (DISCONNECT, so no will), fail
    /// what is pending; the socket, worker and listeners are then dropped with their closures.
    fn drop(&mut self) {
        self.end();
    }
}

/// Runs `f` on the driver if it still exists (callbacks hold only a `Weak`).
fn with(this: &Weak<RefCell<Inner>>, f: impl FnOnce(&mut Inner)) {
    if let Some(inner) = this.upgrade() {
        f(&mut inner.borrow_mut());
    }
}
