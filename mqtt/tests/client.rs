//! The client state machine against a scripted broker, in memory, with virtual time. Every
//! packet goes through the real codec in both directions.

#![cfg(not(target_arch = "wasm32"))]

use std::time::Duration;

use switchboard_mqtt::client::{Action, ClientError, ClientState, CloseReason};
use switchboard_mqtt::{
    BytesMut, ConnAck, Connect, Decoder, Disconnect, Packet, PacketId, Properties, ProtocolVersion,
    PubAck, PubComp, PubRec, PubRel, Publish, QoS, QosPid, ReasonCode, SubAck, SubscriptionOptions,
};

/// The client plus the broker end of the wire.
struct Pair {
    client: ClientState,
    now: Duration,
    /// Decoder on the broker side (learns the version from CONNECT).
    broker_decoder: Decoder,
    /// Decoder on the client side.
    client_decoder: Decoder,
    /// Packets the broker received, not yet inspected.
    at_broker: Vec<Packet>,
    /// Non-send actions, not yet inspected.
    events: Vec<Action>,
    /// The last timer the client asked for.
    timer: Option<Duration>,
}

impl Pair {
    fn new(connect: Connect) -> Self {
        let mut client_decoder = Decoder::new(1 << 20);
        client_decoder.set_version(connect.protocol);
        Self {
            client: ClientState::new(connect),
            now: Duration::ZERO,
            broker_decoder: Decoder::new(1 << 20),
            client_decoder,
            at_broker: Vec::new(),
            events: Vec::new(),
            timer: None,
        }
    }

    /// Moves the client's queued actions onto the wire / into `events`.
    fn pump(&mut self) {
        while let Some(a) = self.client.poll_action() {
            match a {
                Action::Send(p) => {
                    let mut wire = BytesMut::new();
                    p.encode(self.client.protocol(), &mut wire).unwrap();
                    let got = self.broker_decoder.decode(&mut wire).unwrap().unwrap();
                    assert!(wire.is_empty());
                    self.at_broker.push(got);
                }
                Action::ArmTimer { at } => self.timer = Some(at),
                other => self.events.push(other),
            }
        }
    }

    fn broker_sends(&mut self, p: impl Into<Packet>) {
        let mut wire = BytesMut::new();
        p.into().encode(self.client.protocol(), &mut wire).unwrap();
        let got = self.client_decoder.decode(&mut wire).unwrap().unwrap();
        self.client.handle_packet(got, self.now);
        self.pump();
    }

    fn connect(&mut self, session_present: bool) {
        self.client.handle_connected(self.now);
        self.pump();
        assert!(matches!(
            self.take_broker().as_slice(),
            [Packet::Connect(_)]
        ));
        self.broker_sends(ConnAck::new(session_present, ReasonCode::Success));
        assert_eq!(self.events.remove(0), Action::Connected { session_present });
    }

    /// Jumps virtual time to the armed timer and fires it.
    fn fire_timer(&mut self) {
        let at = self.timer.take().expect("a timer is armed");
        self.now = at;
        self.client.handle_timer(at);
        self.pump();
    }

    fn take_broker(&mut self) -> Vec<Packet> {
        std::mem::take(&mut self.at_broker)
    }

    fn take_events(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.events)
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn keepalive_ping_then_timeout_at_one_and_a_half_intervals() {
    let mut c = Connect::new(ProtocolVersion::V3_1_1, "ka");
    c.keep_alive = 10;
    let mut pair = Pair::new(c);
    pair.connect(false);
    assert_eq!(pair.timer, Some(secs(10.0)));
    pair.fire_timer();
    assert_eq!(pair.take_broker(), vec![Packet::PingReq]);
    // No PINGRESP: the next deadline is 1.5 x keep alive after the last packet received.
    assert_eq!(pair.timer, Some(secs(15.0)));
    pair.fire_timer();
    assert_eq!(
        pair.take_events(),
        vec![Action::Close {
            reason: CloseReason::KeepAliveTimeout
        }]
    );
    assert!(!pair.client.is_connected());
    assert_eq!(pair.client.next_deadline(), None);
}

#[test]
fn keepalive_pingresp_keeps_the_connection() {
    let mut c = Connect::new(ProtocolVersion::V5, "ka");
    c.keep_alive = 10;
    let mut pair = Pair::new(c);
    pair.connect(false);
    pair.fire_timer();
    assert_eq!(pair.take_broker(), vec![Packet::PingReq]);
    pair.now = secs(11.0);
    pair.broker_sends(Packet::PingResp);
    // Next ping 10 s after the PINGREQ was sent (t=10); the failure deadline moved to 26.5.
    assert_eq!(pair.timer, Some(secs(20.0)));
    pair.fire_timer();
    assert_eq!(pair.take_broker(), vec![Packet::PingReq]);
    assert!(pair.take_events().is_empty());
    assert!(pair.client.is_connected());
}

#[test]
fn qos2_retransmitted_after_reconnect() {
    let mut c = Connect::new(ProtocolVersion::V5, "q2");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(3600);
    let mut pair = Pair::new(c);
    pair.connect(false);

    let id = pair
        .client
        .publish(
            "a/b",
            "hello",
            QoS::ExactlyOnce,
            false,
            Properties::default(),
        )
        .unwrap()
        .unwrap();
    pair.pump();
    let sent = pair.take_broker();
    let [Packet::Publish(first)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert!(!first.dup);
    assert_eq!(first.qos_pid, QosPid::ExactlyOnce(id));

    // Connection lost before PUBREC: the PUBLISH is resent with DUP.
    pair.client.handle_connection_lost();
    pair.now = secs(1.0);
    pair.connect(true);
    let sent = pair.take_broker();
    let [Packet::Publish(again)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert!(again.dup);
    assert_eq!(again.qos_pid, QosPid::ExactlyOnce(id));
    assert_eq!(again.payload, "hello");

    // PUBREC arrives, PUBREL goes out; connection lost again before PUBCOMP.
    pair.broker_sends(PubRec::new(id));
    assert_eq!(pair.take_broker(), vec![Packet::PubRel(PubRel::new(id))]);
    pair.client.handle_connection_lost();
    pair.connect(true);
    // Now the PUBREL is retransmitted, not the PUBLISH.
    assert_eq!(pair.take_broker(), vec![Packet::PubRel(PubRel::new(id))]);
    pair.broker_sends(PubComp::new(id));
    assert_eq!(
        pair.take_events(),
        vec![Action::PublishComplete {
            pid: id,
            result: Ok(())
        }]
    );
    assert_eq!(pair.client.in_flight(), 0);
}

#[test]
fn retransmission_keeps_the_original_order() {
    let mut c = Connect::new(ProtocolVersion::V3_1_1, "order");
    c.clean_start = false;
    let mut pair = Pair::new(c);
    pair.connect(false);
    let ids: Vec<_> = (0..5)
        .map(|i| {
            pair.client
                .publish(
                    "t",
                    format!("m{i}"),
                    QoS::AtLeastOnce,
                    false,
                    Properties::default(),
                )
                .unwrap()
                .unwrap()
        })
        .collect();
    pair.pump();
    pair.take_broker();
    pair.broker_sends(PubAck::new(ids[1]));
    assert_eq!(
        pair.take_events(),
        vec![Action::PublishComplete {
            pid: ids[1],
            result: Ok(())
        }]
    );
    pair.client.handle_connection_lost();
    pair.connect(true);
    let resent: Vec<_> = pair
        .take_broker()
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => {
                assert!(p.dup);
                p.pid().unwrap()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(resent, vec![ids[0], ids[2], ids[3], ids[4]]);
}

#[test]
fn session_not_present_resends_as_new_and_asks_to_resubscribe() {
    let mut pair = Pair::new(Connect::new(ProtocolVersion::V3_1_1, "s"));
    pair.connect(false);
    let id = pair
        .client
        .publish("t", "x", QoS::AtLeastOnce, false, Properties::default())
        .unwrap()
        .unwrap();
    let sub = pair
        .client
        .subscribe(
            vec![("t/#".into(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .unwrap();
    pair.pump();
    pair.take_broker();
    pair.client.handle_connection_lost();
    pair.pump();
    assert_eq!(
        pair.take_events(),
        vec![Action::SubscribeComplete {
            pid: sub,
            result: Err(ClientError::ConnectionLost)
        }]
    );
    pair.connect(false);
    let sent = pair.take_broker();
    let [Packet::Publish(p)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert!(
        !p.dup,
        "a new session gets a first attempt, not a duplicate"
    );
    assert_eq!(p.pid(), Some(id));
}

#[test]
fn receive_maximum_queues_beyond_the_limit() {
    let mut pair = Pair::new(Connect::new(ProtocolVersion::V5, "rm"));
    pair.client.handle_connected(pair.now);
    pair.pump();
    pair.take_broker();
    let mut ack = ConnAck::new(false, ReasonCode::Success);
    ack.properties.receive_maximum = Some(2);
    pair.broker_sends(ack);
    pair.take_events();
    let ids: Vec<_> = (0..4)
        .map(|_| {
            pair.client
                .publish("t", "x", QoS::AtLeastOnce, false, Properties::default())
                .unwrap()
                .unwrap()
        })
        .collect();
    pair.pump();
    assert_eq!(pair.take_broker().len(), 2);
    assert_eq!(pair.client.in_flight(), 2);
    assert_eq!(pair.client.queued(), 2);
    pair.broker_sends(PubAck::new(ids[0]));
    let sent = pair.take_broker();
    let [Packet::Publish(p)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(p.pid(), Some(ids[2]));
    assert_eq!(pair.client.queued(), 1);
}

#[test]
fn incoming_qos1_qos2_and_duplicates() {
    let mut pair = Pair::new(Connect::new(ProtocolVersion::V3_1_1, "in"));
    pair.connect(false);
    let mut p = Publish::new("a", "1");
    p.qos_pid = QosPid::AtLeastOnce(pid(7));
    pair.broker_sends(p.clone());
    assert_eq!(
        pair.take_broker(),
        vec![Packet::PubAck(PubAck::new(pid(7)))]
    );
    assert_eq!(pair.take_events(), vec![Action::Deliver(p)]);

    let mut q = Publish::new("a", "2");
    q.qos_pid = QosPid::ExactlyOnce(pid(8));
    pair.broker_sends(q.clone());
    let mut dup = q.clone();
    dup.dup = true;
    pair.broker_sends(dup);
    // Delivered once, PUBREC twice.
    assert_eq!(pair.take_events(), vec![Action::Deliver(q)]);
    assert_eq!(
        pair.take_broker(),
        vec![
            Packet::PubRec(PubRec::new(pid(8))),
            Packet::PubRec(PubRec::new(pid(8)))
        ]
    );
    pair.broker_sends(PubRel::new(pid(8)));
    assert_eq!(
        pair.take_broker(),
        vec![Packet::PubComp(PubComp::new(pid(8)))]
    );
}

#[test]
fn topic_aliases_both_directions() {
    let mut c = Connect::new(ProtocolVersion::V5, "alias");
    c.properties.topic_alias_maximum = Some(4);
    let mut pair = Pair::new(c);
    pair.client.handle_connected(pair.now);
    pair.pump();
    pair.take_broker();
    let mut ack = ConnAck::new(false, ReasonCode::Success);
    ack.properties.topic_alias_maximum = Some(1);
    pair.broker_sends(ack);
    pair.take_events();

    // Outgoing: first use carries topic + alias, later ones only the alias.
    for _ in 0..2 {
        pair.client
            .publish(
                "long/topic",
                "x",
                QoS::AtMostOnce,
                false,
                Properties::default(),
            )
            .unwrap();
    }
    pair.client
        .publish("other", "x", QoS::AtMostOnce, false, Properties::default())
        .unwrap();
    pair.pump();
    let sent: Vec<_> = pair
        .take_broker()
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => (p.topic.to_string(), p.properties.topic_alias),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            ("long/topic".to_owned(), Some(1)),
            (String::new(), Some(1)),
            ("other".to_owned(), None)
        ]
    );

    // Incoming: the alias is resolved before delivery.
    let mut first = Publish::new("in/topic", "1");
    first.properties.topic_alias = Some(2);
    pair.broker_sends(first);
    let mut second = Publish::new("", "2");
    second.properties.topic_alias = Some(2);
    pair.broker_sends(second);
    let topics: Vec<_> = pair
        .take_events()
        .into_iter()
        .map(|a| match a {
            Action::Deliver(p) => {
                assert_eq!(p.properties.topic_alias, None);
                p.topic.to_string()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(topics, ["in/topic", "in/topic"]);

    // An alias above our maximum is a protocol error.
    let mut bad = Publish::new("x", "3");
    bad.properties.topic_alias = Some(5);
    pair.broker_sends(bad);
    assert_eq!(
        pair.take_broker(),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::TopicAliasInvalid
        ))]
    );
    assert_eq!(
        pair.take_events(),
        vec![Action::Close {
            reason: CloseReason::ProtocolError(ReasonCode::TopicAliasInvalid)
        }]
    );
}

#[test]
fn subscribe_and_refused_connection() {
    let mut pair = Pair::new(Connect::new(ProtocolVersion::V3_1_1, "sub"));
    pair.connect(false);
    let id = pair
        .client
        .subscribe(
            vec![("a/+".into(), SubscriptionOptions::qos(QoS::ExactlyOnce))],
            Properties::default(),
        )
        .unwrap();
    pair.pump();
    assert!(matches!(
        pair.take_broker().as_slice(),
        [Packet::Subscribe(_)]
    ));
    pair.broker_sends(SubAck {
        pid: id,
        codes: vec![ReasonCode::GrantedQoS2],
        properties: Properties::default(),
    });
    assert_eq!(
        pair.take_events(),
        vec![Action::SubscribeComplete {
            pid: id,
            result: Ok(vec![ReasonCode::GrantedQoS2])
        }]
    );
    pair.client.disconnect();
    pair.pump();
    assert!(matches!(
        pair.take_broker().as_slice(),
        [Packet::Disconnect(_)]
    ));

    pair.client.handle_connected(pair.now);
    pair.pump();
    pair.take_broker();
    pair.take_events();
    pair.broker_sends(ConnAck::new(false, ReasonCode::NotAuthorized));
    assert_eq!(
        pair.take_events(),
        vec![Action::Close {
            reason: CloseReason::Refused(ReasonCode::NotAuthorized)
        }]
    );
    assert_eq!(
        pair.client
            .publish("t", "x", QoS::AtMostOnce, false, Properties::default()),
        Err(ClientError::NotConnected)
    );
}

#[test]
fn server_limits_from_connack_and_server_disconnect() {
    let mut pair = Pair::new(Connect::new(ProtocolVersion::V5, "limits"));
    pair.client.handle_connected(pair.now);
    pair.pump();
    pair.take_broker();
    let mut ack = ConnAck::new(false, ReasonCode::Success);
    ack.properties.maximum_qos = Some(QoS::AtLeastOnce);
    ack.properties.retain_available = Some(false);
    ack.properties.maximum_packet_size = Some(64);
    ack.properties.server_keep_alive = Some(5);
    pair.broker_sends(ack);
    pair.take_events();
    let none = Properties::default();
    assert_eq!(
        pair.client
            .publish("t", "x", QoS::ExactlyOnce, false, none.clone()),
        Err(ClientError::QoSNotSupported(QoS::AtLeastOnce))
    );
    assert_eq!(
        pair.client
            .publish("t", "x", QoS::AtMostOnce, true, none.clone()),
        Err(ClientError::RetainNotSupported)
    );
    assert!(matches!(
        pair.client
            .publish("t", vec![0u8; 100], QoS::AtMostOnce, false, none.clone()),
        Err(ClientError::PacketTooLarge { max: 64, .. })
    ));
    // Server Keep Alive replaces the 60 s asked for.
    assert_eq!(pair.timer, Some(secs(5.0)));
    pair.broker_sends(Disconnect::new(ReasonCode::ServerShuttingDown));
    assert_eq!(
        pair.take_events(),
        vec![Action::Close {
            reason: CloseReason::ServerDisconnect(ReasonCode::ServerShuttingDown)
        }]
    );
    assert!(!pair.client.is_connected());
}
