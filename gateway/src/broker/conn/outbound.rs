//! Deliveries to the client: the session queue drained into the write buffer within the
//! in-flight window (the client's Receive Maximum), expired messages and ones larger than the
//! client's Maximum Packet Size dropped, read permission checked per delivery, outgoing topic
//! aliases assigned.

use std::sync::Arc;
use std::time::Instant;

use switchboard_mqtt::{ByteString, Packet, PacketId, Publish, QoS, QosPid};

use super::{ServerConn, WRITE_HIGH};
use crate::broker::router::Change;
use crate::broker::session::{Delivery, OutFlight, Stage};

impl ServerConn {
    /// Encodes one delivery as PUBLISH; false when it was dropped (expired, or too large for
    /// the client).
    pub(super) fn encode_delivery(
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
            tracing::debug!(client_id = %self.peer.client_id, topic = %msg.topic, "message larger than the client's maximum packet size dropped");
            return false;
        }
        match packet.encode(self.version, &mut self.out.buf) {
            Ok(()) => {
                self.counters.sent[d.qos as usize] += 1;
                true
            }
            Err(err) => {
                tracing::warn!(client_id = %self.peer.client_id, "cannot encode PUBLISH: {err}");
                false
            }
        }
    }

    /// Moves queued deliveries into the write buffer, within the in-flight window, until the
    /// buffer holds [`WRITE_HIGH`] bytes.
    pub(crate) fn pump(&mut self, now: Instant) {
        if self.out.buf.len() >= WRITE_HIGH || self.closing.is_some() {
            return;
        }
        let session = Arc::clone(&self.session);
        let router = Arc::clone(&self.link.router);
        // Store keys of durable deliveries dropped here, forgotten once the lock is released.
        let mut forget = Vec::new();
        let mut state = session.lock();
        while self.out.buf.len() < WRITE_HIGH {
            let Some(front) = state.queue.front() else {
                break;
            };
            // Keep order: a QoS 1/2 message at the head waits for a free slot.
            if front.qos != QoS::AtMostOnce && state.outgoing.len() >= self.out_window {
                break;
            }
            let Some(d) = state.dequeue() else { break };
            if d.msg.expired(now) {
                self.counters.dropped += 1;
                forget.push(d.store_id);
                continue;
            }
            // Read permission is checked per delivery (retained messages included), so a
            // wide subscription never leaks topics the client may not read.
            if !self
                .link
                .authorizer
                .may_receive(&self.peer.info(), &d.msg.topic)
            {
                forget.push(d.store_id);
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                if !self.encode_delivery(&d, None, false, now) {
                    self.counters.dropped += 1;
                }
                continue;
            }
            let pid = state.next_pid();
            // A QoS 2 PUBLISH goes out only once its packet id is recorded: after a restart
            // it is sent again with the same id, which the client recognises.
            if d.store_id != 0 && d.qos == QoS::ExactlyOnce {
                let ticket = router.record(
                    &self.peer.client_id,
                    Change::Sent {
                        id: d.store_id,
                        pid,
                    },
                );
                self.out.hold(ticket);
            }
            if self.encode_delivery(&d, Some(pid), false, now) {
                state.outgoing.push_back(OutFlight {
                    pid,
                    delivery: d,
                    stage: Stage::Published,
                });
            } else {
                self.counters.dropped += 1;
                forget.push(d.store_id);
            }
        }
        drop(state);
        for id in forget.into_iter().filter(|id| *id != 0) {
            router.record(&self.peer.client_id, Change::Acked { id });
        }
    }
}
