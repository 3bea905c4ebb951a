//! The single-node router: one entrance for publications ([`Router::publish`]), the retained
//! map, routing through the subscription trie into session queues (recording durable copies),
//! and the [`Router`] implementation connections use.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchboard_mqtt::{ByteString, Bytes, Properties, QoS, SubscriptionOptions, topic};

use super::router::{Attached, Change, Durability, Published, Router, RouterFuture, Subscribed};
use super::session::{Delivery, Dropped, Message, QueueLimits, Session};
use super::store::{QueuedMessage, StoreError, Ticket};
use super::trie::{self, Route, Subscriber};
use super::{Broker, Metrics};

/// What delivering to one session did to durable state.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Durable {
    /// Store ticket of the queued copy (0: none).
    pub(super) ticket: Ticket,
    /// The store refused it (size cap).
    pub(super) rejected: bool,
}

impl Broker {
    /// A message of the gateway's own, through [`Router::publish`].
    pub(super) fn publish_own(
        &self,
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        durability: Durability,
    ) -> usize {
        if topic::validate_topic_name(&topic).is_err() {
            tracing::debug!(%topic, "internal publish with an invalid topic dropped");
            return 0;
        }
        let msg = Message {
            topic,
            payload,
            qos,
            retain,
            properties: Properties::default(),
            expires_at: None,
            origin: 0,
        };
        Router::publish(self, Arc::new(msg), durability).routed
    }

    /// Stores, replaces or deletes the retained message on `msg.topic`; the store is told unless
    /// `durability` is volatile. `Err` when the store refused it (nothing changed).
    pub(super) fn retain(
        &self,
        msg: &Arc<Message>,
        durability: Durability,
    ) -> Result<Ticket, StoreError> {
        let metrics = &self.inner.metrics;
        let durable = durability == Durability::Durable;
        if msg.payload.is_empty() {
            // [MQTT-3.3.1-10]: an empty retained message deletes the retained one.
            if self.inner.retained.write().remove(&msg.topic).is_some() {
                Metrics::sub(&metrics.retained, 1);
            }
            return Ok(if durable {
                self.inner.store.retained_deleted(&msg.topic)
            } else {
                0
            });
        }
        let ticket = if durable {
            self.inner.store.retained_set(msg)?
        } else {
            0
        };
        if self
            .inner
            .retained
            .write()
            .insert(msg.topic.clone(), Arc::clone(msg))
            .is_none()
        {
            Metrics::add(&metrics.retained, 1);
        }
        Ok(ticket)
    }

    /// Counts and logs a change the store refused.
    pub(super) fn store_rejected(&self, topic: &str, err: StoreError) {
        Metrics::add(&self.inner.metrics.store_rejected, 1);
        tracing::debug!(%topic, "store refused a durable message: {err}");
    }

    /// Delivers `msg` to every matching session.
    pub(super) fn route(&self, msg: &Arc<Message>) -> Published {
        thread_local! {
            /// Scratch space for the matches of one publication, reused by every publication
            /// routed on this thread (no allocation per PUBLISH).
            static ROUTES: std::cell::RefCell<Vec<Route>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut routes = ROUTES.with(|r| std::mem::take(&mut *r.borrow_mut()));
        // Read lock only while walking the trie: no `.await`, no session lock inside.
        self.inner
            .subs
            .read()
            .collect(&msg.topic, msg.origin, &mut routes);
        let mut published = Published {
            routed: routes.len(),
            ..Published::default()
        };
        for route in routes.drain(..) {
            let delivery = Delivery {
                msg: Arc::clone(msg),
                qos: msg.qos.min(route.qos),
                retain: route.retain_as_published && msg.retain,
                sub_ids: route.sub_ids,
                store_id: 0,
            };
            let durable = self.deliver_to(&route.session, delivery);
            published.ticket = published.ticket.max(durable.ticket);
            published.rejected |= durable.rejected;
        }
        ROUTES.with(|r| *r.borrow_mut() = routes);
        published
    }

    /// Puts a delivery into a session's queue and wakes its connection.
    /// QoS 1/2 deliveries to a durable session are recorded in the store first, under the
    /// session lock, so their later acknowledgement is always recorded after them.
    pub(super) fn deliver_to(&self, session: &Session, mut delivery: Delivery) -> Durable {
        let mut durable = Durable::default();
        let persist = delivery.qos != QoS::AtMostOnce && session.is_durable();
        let online = session.is_online();
        let store = self.store();
        let result = {
            let mut state = session.lock();
            if persist {
                let id = store.next_id();
                let queued = QueuedMessage {
                    msg: &delivery.msg,
                    qos: delivery.qos,
                    retain: delivery.retain,
                    sub_ids: &delivery.sub_ids,
                };
                match store.message_queued(&session.client_id, id, &queued) {
                    Ok(ticket) => {
                        durable.ticket = ticket;
                        delivery.store_id = id;
                    }
                    Err(err) => {
                        drop(state);
                        self.store_rejected(&delivery.msg.topic, err);
                        Metrics::add(&self.inner.metrics.messages_dropped, 1);
                        durable.rejected = true;
                        return durable;
                    }
                }
            }
            let id = delivery.store_id;
            let result = state.enqueue(delivery, online, self.queue_limits());
            if result.is_err() && id != 0 {
                store.message_acked(&session.client_id, id);
            }
            result
        };
        match result {
            Ok(()) => {
                if online {
                    session.notify.notify_one();
                }
            }
            Err(why) => {
                Metrics::add(&self.inner.metrics.messages_dropped, 1);
                if why == Dropped::QueueFull {
                    tracing::debug!(client_id = %session.client_id, "session queue full, message dropped");
                }
            }
        }
        durable
    }

    pub(super) fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            messages: self.inner.config.max_queued_messages,
            bytes: self.inner.config.max_queued_bytes,
        }
    }

    /// Retained messages matching `filter` (for delivery at subscribe time).
    pub(crate) fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let retained = self.inner.retained.read();
        if !filter.contains(['+', '#']) {
            return retained.get(filter).cloned().into_iter().collect();
        }
        retained
            .values()
            .filter(|m| trie::matches(filter, &m.topic))
            .cloned()
            .collect()
    }

    /// Adds a subscription to the trie; true when it replaced an existing one.
    pub(crate) fn trie_insert(&self, filter: &str, sub: Subscriber) -> bool {
        let (group, filter) = split_shared(filter);
        let mut trie = self.inner.subs.write();
        let replaced = trie.insert(group, filter, sub);
        self.inner
            .metrics
            .subscriptions
            .store(trie.len() as u64, Ordering::Relaxed);
        replaced
    }

    /// Removes a subscription from the trie; true when there was one.
    pub(crate) fn trie_remove(&self, filter: &str, key: u64) -> bool {
        let (group, filter) = split_shared(filter);
        let mut trie = self.inner.subs.write();
        let removed = trie.remove(group, filter, key);
        self.inner
            .metrics
            .subscriptions
            .store(trie.len() as u64, Ordering::Relaxed);
        removed
    }
}

/// The single-node router: the subscription trie, the session registry, the retained map and
/// the store of this process.
impl Router for Broker {
    fn assign_client_id(&self) -> ByteString {
        self.next_client_id()
    }

    fn attach<'a>(
        &'a self,
        client_id: &'a ByteString,
        clean_start: bool,
        expiry: u32,
        will: Option<&'a (Message, u32)>,
    ) -> RouterFuture<'a, Attached> {
        Box::pin(async move {
            let mut attached = self.attach_session(client_id, clean_start, expiry).await;
            if let Some((will, delay)) = will {
                let ticket = self.store().will_armed(client_id, will, *delay);
                attached.ticket = attached.ticket.max(ticket);
                attached.session.lock().will_armed = true;
            }
            attached
        })
    }

    fn detach(&self, session: &Arc<Session>, generation: u64, will: Option<(Message, u32)>) {
        self.detach_session(session, generation, will);
    }

    fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &ByteString,
        options: &SubscriptionOptions,
        id: Option<u32>,
    ) -> Subscribed {
        let replaced = self.trie_insert(
            filter,
            Subscriber {
                session: Arc::clone(session),
                qos: options.qos,
                no_local: options.no_local,
                retain_as_published: options.retain_as_published,
                id,
            },
        );
        session.lock().subscriptions.insert(filter.clone());
        let ticket = if session.is_durable() {
            self.store()
                .subscribed(&session.client_id, filter, options, id)
        } else {
            0
        };
        Subscribed { replaced, ticket }
    }

    fn unsubscribe(&self, session: &Arc<Session>, filter: &ByteString) -> Option<Ticket> {
        let existed = session.lock().subscriptions.remove(filter);
        let removed = self.trie_remove(filter, session.key);
        if !(existed || removed) {
            return None;
        }
        Some(if session.is_durable() {
            self.store().unsubscribed(&session.client_id, filter)
        } else {
            0
        })
    }

    fn publish(&self, msg: Arc<Message>, durability: Durability) -> Published {
        let mut retained = Published::default();
        if msg.retain {
            match self.retain(&msg, durability) {
                Ok(ticket) => retained.ticket = ticket,
                Err(err) => {
                    self.store_rejected(&msg.topic, err);
                    retained.rejected = true;
                }
            }
        }
        let mut published = self.route(&msg);
        published.ticket = published.ticket.max(retained.ticket);
        published.rejected |= retained.rejected;
        published
    }

    fn retained(&self, filter: &str) -> Vec<Arc<Message>> {
        self.retained_matching(filter)
    }

    fn deliver(&self, session: &Session, delivery: Delivery) -> Ticket {
        self.deliver_to(session, delivery).ticket
    }

    fn record(&self, client_id: &str, change: Change) -> Ticket {
        let store = self.store();
        match change {
            Change::Sent { id, pid } => store.message_sent(client_id, id, pid),
            Change::Released { id, pid } => store.message_released(client_id, id, pid),
            Change::Acked { id } => store.message_acked(client_id, id),
            Change::Qos2Received(pid) => store.qos2_received(client_id, pid),
            Change::Qos2Released(pid) => store.qos2_released(client_id, pid),
        }
    }

    fn committed(&self, ticket: Ticket) -> RouterFuture<'_, ()> {
        self.store().committed(ticket)
    }

    fn lost(&self, from: Ticket, to: Ticket) -> bool {
        self.store().lost(from, to)
    }
}

/// Splits `$share/<group>/<filter>` into the group and the filter; other filters have no group.
pub(crate) fn split_shared(filter: &str) -> (Option<&str>, &str) {
    match topic::parse_shared(filter) {
        Ok(Some(shared)) => (Some(shared.group), shared.filter),
        _ => (None, filter),
    }
}
