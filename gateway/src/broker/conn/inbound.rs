//! Packets from the client after CONNACK: PUBLISH (topic aliases, rate limit, permission, the
//! QoS 1 and 2 flows), the acknowledgements of deliveries, SUBSCRIBE and UNSUBSCRIBE, PINGREQ
//! and DISCONNECT. Each handler changes shared state through the [`Router`] at once and encodes
//! its answer behind the store ticket the change returned.
//!
//! [`Router`]: crate::broker::router::Router

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_mqtt::{
    ByteString, Packet, PubAck, PubComp, PubRec, PubRel, Publish, QoS, QosPid, ReasonCode,
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, topic,
};

use super::{End, ServerConn, Violation};
use crate::broker::router::{Change, Durability, Published, Router};
use crate::broker::session::{Delivery, Message, OutFlight, Stage};

impl ServerConn {
    /// Handles one packet from the client.
    pub(super) fn handle_packet(&mut self, packet: Packet, now: Instant) -> Result<(), Violation> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, now)?,
            Packet::PubAck(ack) => {
                self.complete(|f| f.pid == ack.pid && f.delivery.qos == QoS::AtLeastOnce);
            }
            Packet::PubRec(rec) => self.on_pubrec(rec),
            Packet::PubRel(rel) => self.on_pubrel(&rel),
            Packet::PubComp(comp) => {
                self.complete(|f| f.pid == comp.pid && f.stage == Stage::Released);
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe)?,
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe)?,
            Packet::PingReq => self.send(Packet::PingResp),
            Packet::Disconnect(disconnect) => {
                if let Some(expiry) = disconnect.properties.session_expiry_interval {
                    // [MQTT-3.14.2-2]: expiry 0 at CONNECT cannot be raised at DISCONNECT.
                    if self.expiry == 0 && expiry != 0 {
                        return Err(Violation::ExpiryRaised);
                    }
                    let expiry = expiry.min(self.link.limits.max_session_expiry);
                    self.session.lock().expiry_interval = expiry;
                }
                let will = disconnect.code == ReasonCode::DisconnectWithWill;
                self.closing = Some((End::Normal { will }, None));
            }
            Packet::Connect(_) => return Err(Violation::SecondConnect),
            Packet::Auth(_) => return Err(Violation::AuthWithoutMethod),
            other => return Err(Violation::ServerPacket(other.packet_type())),
        }
        Ok(())
    }

    /// Removes the outgoing flight `done` matches (a completed delivery) and forgets it in the
    /// store.
    fn complete(&mut self, done: impl Fn(&OutFlight) -> bool) {
        let mut state = self.session.lock();
        let Some(i) = state.outgoing.iter().position(done) else {
            return;
        };
        let flight = state.outgoing.remove(i);
        drop(state);
        self.forget(flight);
    }

    /// Forgets a completed or dropped outgoing delivery in the store.
    fn forget(&self, done: Option<OutFlight>) {
        if let Some(id) = done.map(|f| f.delivery.store_id).filter(|id| *id != 0) {
            self.link
                .router
                .record(&self.peer.client_id, Change::Acked { id });
        }
    }

    fn on_pubrec(&mut self, rec: PubRec) {
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
                // PUBREL goes out once recorded: after a restart the broker must not send the
                // PUBLISH again (the client may have forgotten its id).
                if id != 0 {
                    let change = Change::Released { id, pid: rec.pid };
                    let ticket = self.link.router.record(&self.peer.client_id, change);
                    self.hold(ticket);
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

    fn on_pubrel(&mut self, rel: &PubRel) {
        let known = self.session.lock().incoming_qos2.remove(&rel.pid.get());
        // PUBCOMP goes out once the release is recorded, or a restart would take the client's
        // next message with this id for a duplicate.
        if known && self.session.is_durable() {
            let change = Change::Qos2Released(rel.pid);
            let ticket = self.link.router.record(&self.peer.client_id, change);
            self.hold(ticket);
        }
        let mut comp = PubComp::new(rel.pid);
        if !known && self.v5() {
            comp.code = ReasonCode::PacketIdentifierNotFound;
        }
        self.send(Packet::PubComp(comp));
    }

    fn on_publish(&mut self, mut publish: Publish, now: Instant) -> Result<(), Violation> {
        if let Some(bucket) = &mut self.publish_bucket
            && !bucket.take(now)
        {
            return Err(Violation::PublishRate);
        }
        self.counters.received[publish.qos_pid.qos() as usize] += 1;
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > self.link.limits.topic_alias_maximum {
                return Err(Violation::TopicAliasOutOfRange);
            }
            if publish.topic.is_empty() {
                match self.alias_in.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => return Err(Violation::TopicAliasUnknown(alias)),
                }
            } else {
                self.alias_in.insert(alias, publish.topic.clone());
            }
        }
        if topic::validate_topic_name(&publish.topic).is_err() {
            return Err(Violation::TopicNameInvalid);
        }
        if publish.topic.split('/').count() > self.link.limits.max_topic_levels {
            return Err(Violation::TooManyLevels);
        }
        let allowed = self
            .link
            .authorizer
            .may_publish(&self.peer.info(), &publish.topic);
        let code = if allowed {
            ReasonCode::Success
        } else {
            ReasonCode::NotAuthorized
        };
        match publish.qos_pid {
            QosPid::AtMostOnce => {
                if allowed {
                    self.forward(publish, now);
                }
            }
            QosPid::AtLeastOnce(pid) => {
                let mut code = code;
                if allowed && self.forward(publish, now).rejected {
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
                    if self.v5()
                        && state.incoming_qos2.len()
                            >= usize::from(self.link.limits.receive_maximum)
                    {
                        return Err(Violation::ReceiveMaximumExceeded);
                    }
                    if allowed {
                        state.incoming_qos2.insert(pid.get());
                    }
                }
                drop(state);
                let mut code = code;
                if fresh && allowed {
                    if self.forward(publish, now).rejected {
                        self.session.lock().incoming_qos2.remove(&pid.get());
                        code = self.quota_exceeded()?;
                    } else if self.session.is_durable() {
                        let change = Change::Qos2Received(pid);
                        let ticket = self.link.router.record(&self.peer.client_id, change);
                        self.hold(ticket);
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
    fn quota_exceeded(&self) -> Result<ReasonCode, Violation> {
        if self.v5() {
            Ok(ReasonCode::QuotaExceeded)
        } else {
            Err(Violation::StoreFull)
        }
    }

    /// Routes a client's publication. Its acknowledgement (encoded next) waits for the commit
    /// of its durable copies; QoS 0 has none, and a later acknowledgement's ticket covers its
    /// changes too, tickets being ordered.
    fn forward(&mut self, publish: Publish, now: Instant) -> Published {
        let mut properties = publish.properties;
        properties.subscription_identifiers.clear();
        let expires_at = properties
            .message_expiry_interval
            .map(|s| now + Duration::from_secs(s.into()));
        let msg = Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos_pid.qos(),
            retain: publish.retain,
            properties,
            expires_at,
            origin: self.session.key,
        });
        let qos = msg.qos;
        let published = self.link.router.publish(msg, Durability::Durable);
        if qos != QoS::AtMostOnce {
            self.hold(published.ticket);
        }
        published
    }

    fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Violation> {
        let router = Arc::clone(&self.link.router);
        let sub_id = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        // The same filter twice in one SUBSCRIBE: the last one replaces the earlier ones
        // ([MQTT-3.8.4-3]), so only it is applied (and its retained messages sent once); every
        // occurrence gets its code in the SUBACK.
        let n = subscribe.filters.len();
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(n);
        for (i, (filter, _)) in subscribe.filters.iter().enumerate() {
            last.insert(filter, i);
        }
        let mut apply = vec![false; n];
        for i in last.into_values() {
            apply[i] = true;
        }
        let mut codes: Vec<Option<ReasonCode>> = vec![None; n];
        let mut retained = Vec::new();
        for (i, (filter, options)) in subscribe.filters.iter().enumerate() {
            if !apply[i] {
                continue;
            }
            let code = self.subscribe_one(&router, filter, options, sub_id, &mut retained)?;
            codes[i] = Some(code);
        }
        let by_filter: HashMap<&str, ReasonCode> = subscribe
            .filters
            .iter()
            .zip(&codes)
            .filter_map(|((f, _), c)| c.map(|c| (&**f, c)))
            .collect();
        let codes = subscribe
            .filters
            .iter()
            .map(|(f, _)| by_filter[&**f])
            .collect();
        self.send(Packet::SubAck(SubAck {
            pid: subscribe.pid,
            codes,
            properties: Default::default(),
        }));
        for delivery in retained {
            router.deliver(&self.session, delivery);
        }
        Ok(())
    }

    /// Applies one filter of a SUBSCRIBE; its SUBACK code, or a violation.
    fn subscribe_one(
        &mut self,
        router: &Arc<dyn Router>,
        filter: &ByteString,
        options: &SubscriptionOptions,
        sub_id: Option<u32>,
        retained: &mut Vec<Delivery>,
    ) -> Result<ReasonCode, Violation> {
        let (shared, plain) = match topic::parse_shared(filter) {
            Ok(Some(shared)) => (true, shared.filter),
            Ok(None) => (false, &**filter),
            Err(_) => return Ok(ReasonCode::TopicFilterInvalid),
        };
        if topic::validate_topic_filter(plain).is_err()
            || plain.split('/').count() > self.link.limits.max_topic_levels
        {
            return Ok(ReasonCode::TopicFilterInvalid);
        }
        if shared && options.no_local {
            return Err(Violation::NoLocalOnShared);
        }
        if !self
            .link
            .authorizer
            .may_subscribe(&self.peer.info(), filter)
        {
            return Ok(ReasonCode::NotAuthorized);
        }
        // `[limits] max_subscriptions`: a new filter beyond it is refused; replacing one is not.
        let max = self.link.limits.max_subscriptions;
        if max > 0 {
            let state = self.session.lock();
            if state.subscriptions.len() >= max && !state.subscriptions.contains(filter) {
                drop(state);
                tracing::debug!(client_id = %self.peer.client_id, %filter, "subscription refused: max_subscriptions reached");
                return Ok(if self.v5() {
                    ReasonCode::QuotaExceeded
                } else {
                    ReasonCode::UnspecifiedError
                });
            }
        }
        // In force from here on: a publication routed after this line reaches the session
        // even while the SUBACK still waits for the store.
        let subscribed = router.subscribe(&self.session, filter, options, sub_id);
        self.hold(subscribed.ticket);
        // [MQTT-3.3.1-6] retained messages go to a new subscription (v5: per Retain
        // Handling; never to shared subscriptions).
        let send = !shared
            && match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtSubscribeIfNew => !subscribed.replaced,
                RetainHandling::DoNotSend => false,
            };
        if send {
            for msg in router.retained(plain) {
                retained.push(Delivery {
                    qos: msg.qos.min(options.qos),
                    msg,
                    retain: true,
                    sub_ids: sub_id.into_iter().collect(),
                    store_id: 0,
                });
            }
        }
        Ok(ReasonCode::granted(options.qos))
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), Violation> {
        // An invalid filter makes the whole packet malformed (section 4.7): nothing of it is
        // applied, as Mosquitto does, rather than answering it with an UNSUBACK.
        if unsubscribe
            .filters
            .iter()
            .any(|f| topic::validate_topic_filter(f).is_err())
        {
            return Err(Violation::UnsubscribeFilterInvalid);
        }
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in unsubscribe.filters {
            match self.link.router.unsubscribe(&self.session, &filter) {
                Some(ticket) => {
                    self.hold(ticket);
                    codes.push(ReasonCode::Success);
                }
                None => codes.push(ReasonCode::NoSubscriptionExisted),
            }
        }
        self.send(Packet::UnsubAck(UnsubAck {
            pid: unsubscribe.pid,
            codes,
            properties: Default::default(),
        }));
        Ok(())
    }
}
