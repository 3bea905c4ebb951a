//! Timers on virtual time (keep alive, will delay, session and message expiry), a rule broken
//! over the wire, and a SUBSCRIBE handled while an earlier acknowledgement waits for a commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_mqtt::client::{Action, CloseReason};
use switchboard_mqtt::{
    ByteString, Bytes, Packet, PacketId, Properties, Publish, QoS, QosPid, ReasonCode,
    SubscriptionOptions,
};
use tokio::sync::watch;

use super::{Pair, payloads, publish, sub, v5, v5_kept, will};
use crate::broker::router::{
    Attached, Change, Durability, Published, Router, RouterFuture, Subscribed,
};
use crate::broker::session::{Delivery, Message, Session};
use crate::broker::store::Ticket;
use crate::broker::{Broker, BrokerConfig};

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
    let away = pair.add(v5_kept("away", 30));
    let sender = pair.add(v5("sender"));
    pair.connect(away).await;
    pair.connect(sender).await;
    sub(&mut pair, away, "lamp/#", QoS::AtLeastOnce);
    pair.cut(away);

    pair.advance(Duration::from_secs(10)).await;
    publish(&mut pair, sender, "lamp/1", "on", QoS::AtLeastOnce, false);
    pair.advance(Duration::from_secs(10)).await;
    pair.connect(away).await;
    assert!(matches!(
        pair.client(away)
            .events
            .iter()
            .rev()
            .find(|a| matches!(a, Action::Connected { .. })),
        Some(Action::Connected {
            session_present: true
        })
    ));
    assert_eq!(payloads(pair.client(away)), ["on"]);

    pair.cut(away);
    publish(&mut pair, sender, "lamp/1", "off", QoS::AtLeastOnce, false);
    pair.advance(Duration::from_secs(31)).await;
    pair.connect(away).await;
    assert!(matches!(
        pair.client(away)
            .events
            .iter()
            .rev()
            .find(|a| matches!(a, Action::Connected { .. })),
        Some(Action::Connected {
            session_present: false
        })
    ));
    assert_eq!(
        payloads(pair.client(away)),
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
        will: Option<&'a (Message, u32)>,
    ) -> RouterFuture<'a, Attached> {
        self.inner.attach(client_id, clean_start, expiry, will)
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
    fn lost(&self, from: Ticket, to: Ticket) -> bool {
        self.inner.lost(from, to)
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

#[tokio::test(start_paused = true)]
/// [MQTT-3.3.2-5] a message whose expiry passed while it waited is not delivered;
/// [MQTT-3.3.2-6] the interval forwarded is what is left of it.
async fn an_expired_message_is_dropped_and_the_rest_of_an_interval_is_forwarded() {
    let mut pair = Pair::new(BrokerConfig::default());
    let away = pair.add(v5_kept("away", 3600));
    let sender = pair.add(v5("sender"));
    pair.connect(away).await;
    pair.connect(sender).await;
    sub(&mut pair, away, "exp/#", QoS::AtLeastOnce);
    pair.cut(away);
    for (topic, payload, interval) in [("exp/short", "gone", 1), ("exp/long", "kept", 100)] {
        let properties = Properties {
            message_expiry_interval: Some(interval),
            ..Properties::default()
        };
        pair.state(sender)
            .publish(topic, payload, QoS::AtLeastOnce, false, properties)
            .expect("publish");
        pair.settle();
    }
    pair.advance(Duration::from_millis(1_100)).await;
    pair.connect(away).await;
    let got: Vec<_> = pair.client(away).deliveries().cloned().collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(&got[0].payload[..], b"kept");
    assert_eq!(got[0].properties.message_expiry_interval, Some(99));
}

#[tokio::test(start_paused = true)]
/// [MQTT-3.1.2-24]: a silent 3.1.1 client is closed after one and a half keep alive intervals,
/// without a DISCONNECT (3.1.1 has none from the server).
async fn keep_alive_closes_a_silent_3_1_1_client() {
    let mut pair = Pair::new(BrokerConfig::default());
    let mut connect =
        switchboard_mqtt::Connect::new(switchboard_mqtt::ProtocolVersion::V3_1_1, "old");
    connect.keep_alive = 4;
    let old = pair.add(connect);
    pair.connect(old).await;
    pair.clients[old].frozen = true;
    pair.advance(Duration::from_millis(5_900)).await;
    assert!(pair.client(old).server.is_some(), "closed before 6 s");
    pair.advance(Duration::from_millis(200)).await;
    assert!(pair.client(old).server.is_none(), "open after 6 s");
    assert!(
        !pair
            .client(old)
            .wire
            .iter()
            .any(|p| matches!(p, Packet::Disconnect(_))),
        "a 3.1.1 client got a DISCONNECT"
    );
}
