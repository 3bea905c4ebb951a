//! The life of a session in the single-node router: restored from the store at start, attached
//! to a connection (taking over a live one), detached with its will published now or after its
//! delay, expired, ended.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use switchboard_mqtt::ByteString;
use tokio_util::sync::CancellationToken;

use super::router::{Attached, Durability, Router};
use super::session::{ConnSlot, Delivery, Kick, Kicked, Message, OutFlight, Session, Stage};
use super::trie::Subscriber;
use super::{Broker, Metrics, split_shared};

impl Broker {
    /// Rebuilds what the store read from disk: retained messages, then each session with its
    /// subscriptions (in the trie, so it is routable before any listener accepts), queue,
    /// in-flight messages, incoming QoS 2 ids, expiry timer and delayed will. Sessions and wills
    /// already due are ended and published last, once every session is routable.
    pub(super) fn restore(&self) {
        let restored = self.inner.store.take_restored();
        let metrics = &self.inner.metrics;
        for msg in restored.retained {
            if self
                .inner
                .retained
                .write()
                .insert(msg.topic.clone(), Arc::new(msg))
                .is_none()
            {
                Metrics::add(&metrics.retained, 1);
            }
        }
        let now = std::time::SystemTime::now();
        let mut due_sessions = Vec::new();
        let mut due_wills = Vec::new();
        for rs in restored.sessions {
            let session = Session::new_arc(
                self.inner.next_key.fetch_add(1, Ordering::Relaxed),
                rs.client_id.clone(),
            );
            session.set_durable(true);
            {
                let mut state = session.lock();
                state.expiry_interval = rs.expiry_interval;
                for d in rs.messages {
                    let delivery = Delivery {
                        msg: Arc::new(d.msg),
                        qos: d.qos,
                        retain: d.retain,
                        sub_ids: d.sub_ids,
                        store_id: d.id,
                    };
                    match d.sent {
                        Some((pid, released)) => state.outgoing.push_back(OutFlight {
                            pid,
                            delivery,
                            stage: if released {
                                Stage::Released
                            } else {
                                Stage::Published
                            },
                        }),
                        None => {
                            state.queued_bytes += delivery.msg.payload.len();
                            state.queue.push_back(delivery);
                        }
                    }
                }
                state.incoming_qos2 = rs.incoming_qos2.into_iter().collect();
            }
            for (filter, options, id) in rs.subscriptions {
                session.lock().subscriptions.insert(filter.clone());
                self.trie_insert(
                    &filter,
                    Subscriber {
                        session: Arc::clone(&session),
                        qos: options.qos,
                        no_local: options.no_local,
                        retain_as_published: options.retain_as_published,
                        id,
                    },
                );
            }
            self.registry()
                .insert(rs.client_id.clone(), Arc::clone(&session));
            Metrics::add(&metrics.sessions, 1);
            if let Some((will, at)) = rs.will {
                match at.duration_since(now) {
                    Ok(left) if !left.is_zero() => {
                        self.delay_will_for(&session, Arc::new(will), left);
                    }
                    _ => due_wills.push((Arc::clone(&session), will)),
                }
            }
            let left = match rs.expires_at {
                Some(at) => Some(at.duration_since(now).unwrap_or_default()),
                None if rs.expiry_interval == u32::MAX => None,
                // Attached when the broker stopped: it expires an interval after this start.
                None => Some(Duration::from_secs(rs.expiry_interval.into())),
            };
            match left {
                Some(left) if left.is_zero() => due_sessions.push(session),
                Some(left) => self.arm_expiry_in(&session, left),
                None => {}
            }
        }
        for (session, will) in due_wills {
            Router::publish(self, Arc::new(will), Durability::Durable);
            self.inner.store.will_cleared(&session.client_id);
        }
        // [MQTT-3.1.2-8]: the network connection of these clients closed without a DISCONNECT
        // (the process died); their sessions ended with it, so the will goes out now.
        for (client_id, will) in restored.wills {
            tracing::info!(%client_id, topic = %will.topic, "publishing the will of a connection that was up when the gateway stopped");
            Router::publish(self, Arc::new(will), Durability::Durable);
            self.inner.store.will_cleared(&client_id);
        }
        for session in due_sessions {
            self.end_if_idle(&session);
        }
    }

    pub(super) fn registry(
        &self,
    ) -> MutexGuard<'_, HashMap<ByteString, Arc<Session>, ahash::RandomState>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh client identifier for a client that sent an empty one.
    pub(super) fn next_client_id(&self) -> ByteString {
        let n = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        format!("sb-{:x}-{n:x}", self.inner.boot_id & 0xffff_ffff).into()
    }

    /// Attaches a new connection to the session of `client_id`: takes over a live one (the old
    /// connection is kicked and waited for), resumes a stored one unless `clean_start`, or
    /// creates one.
    pub(super) async fn attach_session(
        &self,
        client_id: &ByteString,
        clean_start: bool,
        expiry: u32,
    ) -> Attached {
        loop {
            let wait = {
                let mut registry = self.registry();
                let existing = registry.get(client_id).cloned();
                let live = existing.as_ref().and_then(|s| {
                    s.lock()
                        .conn
                        .as_ref()
                        .map(|c| (c.generation, c.kick.clone(), c.closed.clone()))
                });
                match (existing, live) {
                    (Some(_), Some(live)) => live,
                    (Some(session), None) if !clean_start => {
                        let was_durable = session.is_durable();
                        let mut attached = self.attach_to(&session, true, expiry);
                        drop(registry);
                        if expiry > 0 {
                            attached.ticket = self.store().session_opened(client_id, expiry, false);
                        } else if was_durable {
                            // Resumed with expiry 0: it ends with this connection.
                            attached.ticket = self.store().session_ended(client_id);
                        }
                        return attached;
                    }
                    (existing, _) => {
                        let session = Session::new_arc(
                            self.inner.next_key.fetch_add(1, Ordering::Relaxed),
                            client_id.clone(),
                        );
                        let mut attached = self.attach_to(&session, false, expiry);
                        registry.insert(client_id.clone(), session);
                        drop(registry);
                        Metrics::add(&self.inner.metrics.sessions, 1);
                        if let Some(old) = existing {
                            self.discard(&old);
                        }
                        if expiry > 0 {
                            attached.ticket = self.store().session_opened(client_id, expiry, true);
                        }
                        return attached;
                    }
                }
            };
            // [MQTT-3.1.4-3]: a live connection with this client id is closed first.
            let (generation, kick, closed) = wait;
            kick.kick(Kicked::TakenOver);
            if tokio::time::timeout(Duration::from_secs(5), closed.cancelled())
                .await
                .is_err()
            {
                // The old connection is stuck (or its task died): detach it by force so the
                // session is not blocked forever.
                tracing::warn!(%client_id, "previous connection did not close in time");
                if let Some(session) = self.registry().get(client_id).cloned() {
                    let mut state = session.lock();
                    if state
                        .conn
                        .as_ref()
                        .is_some_and(|c| c.generation == generation)
                    {
                        state.conn = None;
                        session.set_online(false);
                    }
                }
            }
        }
    }

    pub(super) fn attach_to(&self, session: &Arc<Session>, present: bool, expiry: u32) -> Attached {
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let kick = Kick::default();
        let mut state = session.lock();
        if let Some(timer) = state.expiry.take() {
            timer.cancel();
        }
        // [MQTT-3.1.3-9] a delayed will is withdrawn when the client reconnects in time.
        if let Some((timer, _)) = state.pending_will.take() {
            timer.cancel();
            if session.is_durable() {
                self.store().will_cleared(&session.client_id);
            }
        }
        session.set_durable(expiry > 0);
        state.expiry_interval = expiry;
        state.conn = Some(ConnSlot {
            generation,
            kick: kick.clone(),
            closed: CancellationToken::new(),
        });
        session.set_online(true);
        Attached {
            session: Arc::clone(session),
            session_present: present,
            generation,
            kick,
            ticket: 0,
        }
    }

    /// Detaches a closing connection. Publishes the will now, or after its delay; ends the
    /// session now (expiry 0) or arms its expiry timer.
    pub(super) fn detach_session(
        &self,
        session: &Arc<Session>,
        generation: u64,
        will: Option<(Message, u32)>,
    ) {
        let (closed, expiry, armed) = {
            let mut state = session.lock();
            let Some(slot) = state.conn.take_if(|c| c.generation == generation) else {
                return;
            };
            session.set_online(false);
            let armed = std::mem::take(&mut state.will_armed);
            (slot.closed, state.expiry_interval, armed)
        };
        match will {
            Some((will, delay)) if delay > 0 && expiry > 0 => {
                // Replaces the armed record with the delayed one.
                self.delay_will(session, Arc::new(will), delay);
            }
            Some((will, _)) => {
                Router::publish(self, Arc::new(will), Durability::Durable);
                if armed {
                    self.store().will_cleared(&session.client_id);
                }
            }
            None if armed => {
                self.store().will_cleared(&session.client_id);
            }
            None => {}
        }
        if expiry == 0 {
            self.end_if_idle(session);
        } else {
            if session.is_durable() {
                self.store().session_detached(&session.client_id, expiry);
            }
            if expiry != u32::MAX {
                self.arm_expiry(session, expiry);
            }
        }
        closed.cancel();
    }

    pub(super) fn delay_will(&self, session: &Arc<Session>, will: Arc<Message>, delay: u32) {
        let delay = Duration::from_secs(delay.into());
        if session.is_durable() {
            let at = std::time::SystemTime::now() + delay;
            self.store().will_delayed(&session.client_id, &will, at);
        }
        self.delay_will_for(session, will, delay);
    }

    /// Arms the timer of a delayed will (already recorded in the store when durable).
    pub(super) fn delay_will_for(
        &self,
        session: &Arc<Session>,
        will: Arc<Message>,
        delay: Duration,
    ) {
        let timer = CancellationToken::new();
        if let Some((old, _)) = session.lock().pending_will.replace((timer.clone(), will)) {
            old.cancel();
        }
        let broker = self.clone();
        let session = Arc::clone(session);
        tokio::spawn(async move {
            tokio::select! {
                () = timer.cancelled() => {}
                () = tokio::time::sleep(delay) => {
                    let will = session.lock().pending_will.take_if(|(t, _)| !t.is_cancelled());
                    if let Some((_, will)) = will {
                        Router::publish(&broker, Arc::clone(&will), Durability::Durable);
                        if session.is_durable() {
                            broker.store().will_cleared(&session.client_id);
                        }
                    }
                }
            }
        });
    }

    pub(super) fn arm_expiry(&self, session: &Arc<Session>, expiry: u32) {
        self.arm_expiry_in(session, Duration::from_secs(expiry.into()));
    }

    pub(super) fn arm_expiry_in(&self, session: &Arc<Session>, expiry: Duration) {
        let timer = CancellationToken::new();
        if let Some(old) = session.lock().expiry.replace(timer.clone()) {
            old.cancel();
        }
        let broker = self.clone();
        let session = Arc::clone(session);
        tokio::spawn(async move {
            tokio::select! {
                () = timer.cancelled() => {}
                () = tokio::time::sleep(expiry) => {
                    broker.end_if_idle(&session);
                }
            }
        });
    }

    /// Ends `session` if it is still registered and has no connection.
    pub(super) fn end_if_idle(&self, session: &Arc<Session>) {
        {
            let mut registry = self.registry();
            let registered = registry
                .get(&session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, session));
            if !registered || session.lock().conn.is_some() {
                return;
            }
            registry.remove(&session.client_id);
        }
        self.discard(session);
    }

    /// Forgets a session already removed from the registry: its subscriptions leave the trie,
    /// a pending will is published now ([MQTT-3.1.2-8]: the session ended).
    pub(super) fn discard(&self, session: &Arc<Session>) {
        let (subscriptions, will) = {
            let mut state = session.lock();
            if let Some(timer) = state.expiry.take() {
                timer.cancel();
            }
            let subscriptions = std::mem::take(&mut state.subscriptions);
            state.clear();
            (subscriptions, state.pending_will.take())
        };
        if !subscriptions.is_empty() {
            let mut trie = self.inner.subs.write();
            for filter in &subscriptions {
                let (group, filter) = split_shared(filter);
                trie.remove(group, filter, session.key);
            }
            self.inner
                .metrics
                .subscriptions
                .store(trie.len() as u64, Ordering::Relaxed);
        }
        if let Some((timer, will)) = will {
            timer.cancel();
            Router::publish(self, will, Durability::Durable);
        }
        Metrics::sub(&self.inner.metrics.sessions, 1);
        if session.is_durable() {
            session.set_durable(false);
            self.store().session_ended(&session.client_id);
        }
    }
}
