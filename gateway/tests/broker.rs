//! Broker integration tests: the gateway in-process on `127.0.0.1:0`, raw MQTT packets through
//! the codec. Tests that apply to both versions run twice (`<name>::v3_1_1`, `<name>::v5`); the
//! normative statements each covers are named in its doc comment.

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestBroker, V3_1_1, V5, pid, text};
use switchboard::broker::BrokerConfig;
use switchboard_mqtt::{
    Connect, Disconnect, LastWill, Packet, ProtocolVersion, PubAck, PubRec, Publish, QoS, QosPid,
    ReasonCode, RetainHandling, SubscriptionOptions,
};

/// Runs an `async fn(ProtocolVersion)` as two tests, one per protocol version.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v3_1_1() {
                super::$name(super::V3_1_1).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn v5() {
                super::$name(super::V5).await;
            }
        }
    };
}

fn persistent(version: ProtocolVersion, id: &str) -> Connect {
    let mut c = Connect::new(version, id);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(300);
    }
    c
}

fn with_will(version: ProtocolVersion, id: &str, topic: &str, payload: &str) -> Connect {
    let mut c = Connect::new(version, id);
    c.will = Some(LastWill {
        topic: topic.into(),
        payload: payload.as_bytes().to_vec().into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    c
}

both!(connect_and_connack);
/// [MQTT-3.2.0-1] CONNACK first, [MQTT-3.2.2-1]/[MQTT-3.2.2-2] session present 0 on clean
/// start, v5 CONNACK advertises the limits ([MQTT-3.2.2-?] Receive Maximum, Maximum Packet Size).
async fn connect_and_connack(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let (mut client, ack) = Client::connect_with(broker.addr, Connect::new(version, "c1")).await;
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(!ack.session_present);
    if version.is_v5() {
        assert_eq!(ack.properties.receive_maximum, Some(100));
        assert_eq!(ack.properties.maximum_packet_size, Some(1 << 20));
        assert!(ack.properties.topic_alias_maximum.is_some());
    }
    client.ping().await;
    client.disconnect().await;
    broker.stop().await;
}

both!(empty_client_id);
/// [MQTT-3.1.3-6]/[MQTT-3.1.3-7] an empty client id with clean start gets one assigned (v5:
/// Assigned Client Identifier); [MQTT-3.1.3-8] 3.1.1 with clean session 0 gets CONNACK 0x02.
async fn empty_client_id(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let (_client, ack) = Client::connect_with(broker.addr, Connect::new(version, "")).await;
    assert_eq!(ack.code, ReasonCode::Success);
    if version.is_v5() {
        let id = ack
            .properties
            .assigned_client_identifier
            .expect("assigned id");
        assert!(!id.is_empty());
    } else {
        let (mut client, ack) = Client::connect_with(broker.addr, persistent(version, "")).await;
        assert_eq!(ack.code, ReasonCode::ClientIdentifierNotValid);
        assert!(client.next().await.is_none(), "closed after the refusal");
    }
    broker.stop().await;
}

both!(persistent_session_resumes_with_queued_messages);
/// [MQTT-3.1.2-4]/[MQTT-3.1.2-5] a persistent session keeps subscriptions and queues QoS 1/2
/// messages while offline; [MQTT-3.2.2-2] session present is 1 on resume; QoS 0 is not queued.
async fn persistent_session_resumes_with_queued_messages(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let (mut sub, ack) = Client::connect_with(broker.addr, persistent(version, "keeper")).await;
    assert!(!ack.session_present);
    sub.subscribe("keep/#", QoS::ExactlyOnce).await;
    sub.disconnect().await;

    let mut publisher = Client::connect(broker.addr, version, "pub").await;
    publisher
        .publish("keep/1", "one", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("keep/0", "zero", QoS::AtMostOnce, false)
        .await;
    publisher
        .publish("keep/2", "two", QoS::ExactlyOnce, false)
        .await;

    let (mut sub, ack) = Client::connect_with(broker.addr, persistent(version, "keeper")).await;
    assert!(ack.session_present);
    let first = sub.recv_and_ack().await;
    assert_eq!(
        (&*first.topic, text(&first), first.qos()),
        ("keep/1", "one", QoS::AtLeastOnce)
    );
    let second = sub.recv_and_ack().await;
    assert_eq!(
        (&*second.topic, text(&second), second.qos()),
        ("keep/2", "two", QoS::ExactlyOnce)
    );
    sub.ping().await;
    broker.stop().await;
}

both!(clean_start_discards_the_session);
/// [MQTT-3.1.2-6] clean start discards the previous session: session present 0 and its
/// subscriptions are gone.
async fn clean_start_discards_the_session(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let (mut sub, _) = Client::connect_with(broker.addr, persistent(version, "cs")).await;
    sub.subscribe("cs/old", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let (mut sub, ack) = Client::connect_with(broker.addr, Connect::new(version, "cs")).await;
    assert!(!ack.session_present);
    sub.subscribe("cs/marker", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(broker.addr, version, "cs-pub").await;
    publisher
        .publish("cs/old", "stale", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("cs/marker", "m", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&*sub.recv_and_ack().await.topic, "cs/marker");
    broker.stop().await;
}

both!(takeover_closes_the_old_connection);
/// [MQTT-3.1.4-3] a second connection with the same client id closes the first (v5: DISCONNECT
/// 0x8E Session taken over), and the first one's will is published.
async fn takeover_closes_the_old_connection(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let mut watcher = Client::connect(broker.addr, version, "watcher").await;
    watcher.subscribe("will/takeover", QoS::AtLeastOnce).await;
    let (mut old, _) = Client::connect_with(
        broker.addr,
        with_will(version, "twin", "will/takeover", "gone"),
    )
    .await;
    let (mut new, ack) = Client::connect_with(broker.addr, Connect::new(version, "twin")).await;
    assert_eq!(ack.code, ReasonCode::Success);
    let disconnect = old.closed().await;
    if version.is_v5() {
        assert_eq!(
            disconnect.expect("DISCONNECT").code,
            ReasonCode::SessionTakenOver
        );
    } else {
        assert!(disconnect.is_none());
    }
    assert_eq!(text(&watcher.recv_and_ack().await), "gone");
    new.ping().await;
    broker.stop().await;
}

both!(qos_flows_both_directions);
/// [MQTT-4.3.1-1], [MQTT-4.3.2-1]/[MQTT-4.3.2-2], [MQTT-4.3.3-1]/[MQTT-4.3.3-2]: QoS 0, 1 and 2
/// from publisher to broker and from broker to subscriber; [MQTT-3.8.4-6] the delivered QoS is
/// the minimum of published and granted.
async fn qos_flows_both_directions(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let mut sub2 = Client::connect(broker.addr, version, "s2").await;
    let ack = sub2.subscribe("q/+", QoS::ExactlyOnce).await;
    assert_eq!(ack.codes, vec![ReasonCode::GrantedQoS2]);
    let mut sub1 = Client::connect(broker.addr, version, "s1").await;
    let ack = sub1.subscribe("q/+", QoS::AtLeastOnce).await;
    assert_eq!(ack.codes, vec![ReasonCode::GrantedQoS1]);
    let mut publisher = Client::connect(broker.addr, version, "p").await;
    for (qos, name) in [
        (QoS::AtMostOnce, "0"),
        (QoS::AtLeastOnce, "1"),
        (QoS::ExactlyOnce, "2"),
    ] {
        publisher
            .publish(&format!("q/{name}"), name, qos, false)
            .await;
        let got = sub2.recv_and_ack().await;
        assert_eq!((text(&got), got.qos()), (name, qos));
        let got = sub1.recv_and_ack().await;
        assert_eq!((text(&got), got.qos()), (name, qos.min(QoS::AtLeastOnce)));
    }
    // [MQTT-4.6.0-2]..: ordered per topic: a burst of QoS 1 arrives in order.
    for i in 0..50 {
        publisher
            .publish("q/order", &i.to_string(), QoS::AtLeastOnce, false)
            .await;
    }
    for i in 0..50 {
        assert_eq!(text(&sub1.recv_and_ack().await), i.to_string());
    }
    broker.stop().await;
}

both!(unacknowledged_messages_are_resent_with_dup);
/// [MQTT-4.4.0-1] on session resumption unacknowledged PUBLISHes are resent with DUP
/// ([MQTT-3.3.1-1]) and the same packet id, and unacknowledged PUBRELs are resent.
async fn unacknowledged_messages_are_resent_with_dup(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let (mut sub, _) = Client::connect_with(broker.addr, persistent(version, "dup")).await;
    sub.subscribe("dup/#", QoS::ExactlyOnce).await;
    let mut publisher = Client::connect(broker.addr, version, "dup-pub").await;
    publisher
        .publish("dup/1", "one", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("dup/2", "two", QoS::ExactlyOnce, false)
        .await;
    let one = sub.recv_publish().await;
    assert!(!one.dup);
    let two = sub.recv_publish().await;
    let QosPid::ExactlyOnce(two_id) = two.qos_pid else {
        panic!("QoS 2 expected")
    };
    drop(sub); // no PUBACK, no PUBREC

    let (mut sub, ack) = Client::connect_with(broker.addr, persistent(version, "dup")).await;
    assert!(ack.session_present);
    let again = sub.recv_publish().await;
    assert!(again.dup);
    assert_eq!((again.qos_pid, text(&again)), (one.qos_pid, "one"));
    let again = sub.recv_publish().await;
    assert!(again.dup);
    assert_eq!(again.qos_pid, two.qos_pid);
    // Acknowledge the QoS 2 one up to PUBREL, then drop again: PUBREL is resent.
    sub.send(Packet::PubAck(PubAck::new(one.qos_pid.pid().unwrap())))
        .await;
    sub.send(Packet::PubRec(PubRec::new(two_id))).await;
    match sub.recv().await {
        Packet::PubRel(rel) => assert_eq!(rel.pid, two_id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    drop(sub);
    let (mut sub, _) = Client::connect_with(broker.addr, persistent(version, "dup")).await;
    match sub.recv().await {
        Packet::PubRel(rel) => assert_eq!(rel.pid, two_id),
        other => panic!("expected PUBREL again, got {other:?}"),
    }
    sub.send(Packet::PubComp(switchboard_mqtt::PubComp::new(two_id)))
        .await;
    sub.ping().await;
    broker.stop().await;
}

both!(retained_messages);
/// [MQTT-3.3.1-5] retained messages are stored and [MQTT-3.3.1-6] sent to new subscriptions
/// with [MQTT-3.3.1-8] RETAIN set; [MQTT-3.3.1-7] a new one replaces the old; [MQTT-3.3.1-10]/
/// [MQTT-3.3.1-11] an empty payload deletes it; [MQTT-3.3.1-9] live forwarding clears RETAIN.
async fn retained_messages(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let mut publisher = Client::connect(broker.addr, version, "rp").await;
    let mut live = Client::connect(broker.addr, version, "live").await;
    live.subscribe("ret/#", QoS::AtLeastOnce).await;
    publisher
        .publish("ret/a", "first", QoS::AtLeastOnce, true)
        .await;
    publisher
        .publish("ret/a", "second", QoS::AtLeastOnce, true)
        .await;
    publisher
        .publish("ret/b", "other", QoS::AtMostOnce, true)
        .await;
    for expected in ["first", "second", "other"] {
        let p = live.recv_and_ack().await;
        assert_eq!(text(&p), expected);
        assert!(!p.retain, "live delivery has RETAIN cleared");
    }

    let mut late = Client::connect(broker.addr, version, "late").await;
    late.subscribe("ret/a", QoS::AtLeastOnce).await;
    let p = late.recv_and_ack().await;
    assert_eq!(
        (text(&p), p.retain, p.qos()),
        ("second", true, QoS::AtLeastOnce)
    );

    publisher.publish("ret/a", "", QoS::AtMostOnce, true).await;
    let mut later = Client::connect(broker.addr, version, "later").await;
    later.subscribe("ret/#", QoS::AtLeastOnce).await;
    let p = later.recv_and_ack().await;
    assert_eq!((&*p.topic, text(&p), p.retain), ("ret/b", "other", true));
    later.ping().await; // nothing for ret/a
    broker.stop().await;
}

both!(wildcards_do_not_match_dollar_topics);
/// [MQTT-4.7.2-1] `#` and `+` at the first level do not match `$SYS/...`; `$SYS/#` does and
/// carries the broker's retained statistics.
async fn wildcards_do_not_match_dollar_topics(version: ProtocolVersion) {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let mut all = Client::connect(broker.addr, version, "all").await;
    all.subscribe("#", QoS::AtMostOnce).await;
    all.subscribe("+/broker/version", QoS::AtMostOnce).await;
    all.ping().await; // no retained $SYS message came
    let mut sys = Client::connect(broker.addr, version, "sys").await;
    sys.subscribe("$SYS/broker/version", QoS::AtMostOnce).await;
    let p = sys.recv_publish().await;
    assert!(text(&p).starts_with("switchboard"));
    let mut publisher = Client::connect(broker.addr, version, "p").await;
    publisher
        .publish("plain", "x", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&*all.recv_publish().await.topic, "plain");
    broker.stop().await;
}

both!(will_on_abnormal_close_only);
/// [MQTT-3.1.2-8] the will is published when the connection closes without DISCONNECT;
/// [MQTT-3.1.2-10] a normal DISCONNECT discards it; v5 [MQTT-3.14.4-3]... reason 0x04
/// (Disconnect with Will Message) publishes it.
async fn will_on_abnormal_close_only(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let mut watcher = Client::connect(broker.addr, version, "w").await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;

    let (dying, _) =
        Client::connect_with(broker.addr, with_will(version, "d1", "will/1", "abnormal")).await;
    drop(dying);
    let p = watcher.recv_and_ack().await;
    assert_eq!((&*p.topic, text(&p)), ("will/1", "abnormal"));

    let (polite, _) =
        Client::connect_with(broker.addr, with_will(version, "d2", "will/2", "not sent")).await;
    polite.disconnect().await;
    if version.is_v5() {
        let (mut with, _) = Client::connect_with(
            broker.addr,
            with_will(version, "d3", "will/3", "by request"),
        )
        .await;
        with.send(Packet::Disconnect(Disconnect::new(
            ReasonCode::DisconnectWithWill,
        )))
        .await;
        assert!(with.closed().await.is_none());
        assert_eq!(text(&watcher.recv_and_ack().await), "by request");
    }
    let mut marker = Client::connect(broker.addr, version, "m").await;
    marker
        .publish("will/marker", "marker", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(text(&watcher.recv_and_ack().await), "marker");
    broker.stop().await;
}

both!(keep_alive_expires_at_one_and_a_half);
/// [MQTT-3.1.2-24] (3.1.1 [MQTT-3.1.2-24]; v5 [MQTT-3.1.2-22]) a client silent for 1.5 x keep
/// alive is disconnected (v5: 0x8D Keep Alive timeout) and its will is published.
async fn keep_alive_expires_at_one_and_a_half(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let mut watcher = Client::connect(broker.addr, version, "ka-w").await;
    watcher.subscribe("ka/will", QoS::AtLeastOnce).await;
    let mut connect = with_will(version, "ka", "ka/will", "timed out");
    connect.keep_alive = 1;
    let started = Instant::now();
    let (mut client, _) = Client::connect_with(broker.addr, connect).await;
    let disconnect = client.closed().await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400),
        "closed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(3000),
        "closed too late: {elapsed:?}"
    );
    if version.is_v5() {
        assert_eq!(
            disconnect.expect("DISCONNECT").code,
            ReasonCode::KeepAliveTimeout
        );
    }
    assert_eq!(text(&watcher.recv_and_ack().await), "timed out");
    broker.stop().await;
}

both!(overlapping_subscriptions_deliver_once);
/// [MQTT-3.3.5-1] overlapping subscriptions deliver one copy at the highest granted QoS;
/// v5 [MQTT-3.3.4-3]/[MQTT-3.3.4-5]: with every matching subscription identifier.
async fn overlapping_subscriptions_deliver_once(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let mut sub = Client::connect(broker.addr, version, "ov").await;
    let v5 = version.is_v5();
    sub.subscribe_with(
        &[("ov/+", SubscriptionOptions::qos(QoS::AtMostOnce))],
        v5.then_some(1),
    )
    .await;
    sub.subscribe_with(
        &[("ov/#", SubscriptionOptions::qos(QoS::AtLeastOnce))],
        v5.then_some(2),
    )
    .await;
    let mut publisher = Client::connect(broker.addr, version, "ov-p").await;
    publisher
        .publish("ov/x", "once", QoS::ExactlyOnce, false)
        .await;
    publisher
        .publish("ov/x/y", "marker", QoS::AtLeastOnce, false)
        .await;
    let p = sub.recv_and_ack().await;
    assert_eq!((text(&p), p.qos()), ("once", QoS::AtLeastOnce));
    if v5 {
        let mut ids = p.properties.subscription_identifiers.clone();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2]);
    }
    let p = sub.recv_and_ack().await;
    assert_eq!(text(&p), "marker");
    if v5 {
        assert_eq!(p.properties.subscription_identifiers, vec![2]);
    }
    broker.stop().await;
}

both!(shared_subscriptions_round_robin);
/// [MQTT-4.8.2-?] shared subscriptions (`$share/group/filter`, also from 3.1.1 clients): each
/// message goes to one member, in turn; a disconnected member is skipped.
async fn shared_subscriptions_round_robin(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let mut a = Client::connect(broker.addr, version, "sa").await;
    let mut b = Client::connect(broker.addr, ProtocolVersion::V5, "sb").await;
    let (mut c, _) = Client::connect_with(broker.addr, persistent(version, "sc")).await;
    for member in [&mut a, &mut b, &mut c] {
        let ack = member.subscribe("$share/g/sh/+", QoS::AtLeastOnce).await;
        assert_eq!(ack.codes, vec![ReasonCode::GrantedQoS1]);
    }
    let mut publisher = Client::connect(broker.addr, version, "sp").await;
    for i in 0..6 {
        publisher
            .publish("sh/t", &i.to_string(), QoS::AtLeastOnce, false)
            .await;
    }
    let mut got = Vec::new();
    for member in [&mut a, &mut b, &mut c] {
        for _ in 0..2 {
            got.push(text(&member.recv_and_ack().await).parse::<u32>().unwrap());
        }
    }
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
    c.disconnect().await; // persistent: still a member, but offline
    for i in 0..4 {
        publisher
            .publish("sh/t", &format!("x{i}"), QoS::AtLeastOnce, false)
            .await;
    }
    let mut count = 0;
    for member in [&mut a, &mut b] {
        for _ in 0..2 {
            assert!(text(&member.recv_and_ack().await).starts_with('x'));
            count += 1;
        }
    }
    assert_eq!(count, 4);
    broker.stop().await;
}

both!(denied_subscription);
/// [MQTT-3.9.3-?] a subscription refused by the authorizer (`deny_subscribe`) gets SUBACK 0x80
/// (v5: 0x87 Not authorized) while the others in the same SUBSCRIBE are granted.
async fn denied_subscription(version: ProtocolVersion) {
    let broker = TestBroker::start(BrokerConfig {
        sys_interval: 0,
        deny_subscribe: vec!["test/nosubscribe".into()],
        ..BrokerConfig::default()
    })
    .await;
    let mut client = Client::connect(broker.addr, version, "deny").await;
    let ack = client
        .subscribe_with(
            &[
                (
                    "test/nosubscribe",
                    SubscriptionOptions::qos(QoS::AtLeastOnce),
                ),
                ("test/ok", SubscriptionOptions::qos(QoS::AtLeastOnce)),
            ],
            None,
        )
        .await;
    // The codec writes every failure code as 0x80 in 3.1.1.
    assert_eq!(ack.codes[1], ReasonCode::GrantedQoS1);
    if version.is_v5() {
        assert_eq!(ack.codes[0], ReasonCode::NotAuthorized);
    } else {
        assert!(ack.codes[0].is_error());
    }
    broker.stop().await;
}

both!(bad_input_closes_only_the_offender);
/// [MQTT-3.1.0-1] a packet before CONNECT, [MQTT-3.1.0-2] a second CONNECT, [MQTT-2.2.2-?]
/// malformed packets and [MQTT-3.1.2-24] packets over the maximum size close that connection
/// (v5: DISCONNECT 0x81/0x82/0x95) and nothing else.
async fn bad_input_closes_only_the_offender(version: ProtocolVersion) {
    let broker = TestBroker::start(BrokerConfig {
        sys_interval: 0,
        max_packet_size: 1024,
        ..BrokerConfig::default()
    })
    .await;
    let mut bystander = Client::connect(broker.addr, version, "bystander").await;
    bystander.subscribe("bad/#", QoS::AtLeastOnce).await;

    // Before CONNECT.
    let mut early = Client::raw(broker.addr, version).await;
    early.send(Packet::PingReq).await;
    assert!(early.closed().await.is_none());

    // Second CONNECT.
    let mut twice = Client::connect(broker.addr, version, "twice").await;
    twice
        .send(Packet::Connect(Box::new(Connect::new(version, "twice"))))
        .await;
    let d = twice.closed().await;
    if version.is_v5() {
        assert_eq!(d.expect("DISCONNECT").code, ReasonCode::ProtocolError);
    }

    // Malformed: a SUBSCRIBE with reserved flags 0.
    let mut malformed = Client::connect(broker.addr, version, "malformed").await;
    malformed
        .send_bytes(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00])
        .await;
    let d = malformed.closed().await;
    if version.is_v5() {
        assert_eq!(d.expect("DISCONNECT").code, ReasonCode::MalformedPacket);
    }

    // Oversized.
    let mut big = Client::connect(broker.addr, version, "big").await;
    big.send(Packet::Publish(Publish::new("bad/big", vec![0u8; 2048])))
        .await;
    let d = big.closed().await;
    if version.is_v5() {
        assert_eq!(d.expect("DISCONNECT").code, ReasonCode::PacketTooLarge);
    }

    let mut publisher = Client::connect(broker.addr, version, "good").await;
    publisher
        .publish("bad/ok", "still here", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(text(&bystander.recv_and_ack().await), "still here");
    broker.stop().await;
}

both!(graceful_shutdown_reaches_connections);
/// Shutdown closes every connection; v5 clients get DISCONNECT 0x8B (Server shutting down).
async fn graceful_shutdown_reaches_connections(version: ProtocolVersion) {
    let broker = TestBroker::start_default().await;
    let mut client = Client::connect(broker.addr, version, "bye").await;
    broker.shutdown.cancel();
    let d = client.closed().await;
    if version.is_v5() {
        assert_eq!(d.expect("DISCONNECT").code, ReasonCode::ServerShuttingDown);
    }
    broker.stop().await;
}

// ---- MQTT 5.0 only ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// [MQTT-3.8.3-3] No Local: a client's own publications are not sent back to it.
async fn v5_no_local() {
    let broker = TestBroker::start_default().await;
    let mut client = Client::connect(broker.addr, V5, "nl").await;
    let mut options = SubscriptionOptions::qos(QoS::AtLeastOnce);
    options.no_local = true;
    client.subscribe_with(&[("nl/#", options)], None).await;
    client.subscribe("marker", QoS::AtLeastOnce).await;
    client
        .publish("nl/own", "own", QoS::AtLeastOnce, false)
        .await;
    client.publish("marker", "m", QoS::AtLeastOnce, false).await;
    assert_eq!(&*client.recv_and_ack().await.topic, "marker");
    let mut other = Client::connect(broker.addr, V5, "nl2").await;
    other
        .publish("nl/other", "x", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&*client.recv_and_ack().await.topic, "nl/other");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// [MQTT-3.3.1-12]/[MQTT-3.3.1-13] Retain As Published keeps the RETAIN flag on forwarded
/// messages; without it RETAIN is cleared.
async fn v5_retain_as_published() {
    let broker = TestBroker::start_default().await;
    let mut keep = Client::connect(broker.addr, V5, "rap1").await;
    let mut options = SubscriptionOptions::qos(QoS::AtLeastOnce);
    options.retain_as_published = true;
    keep.subscribe_with(&[("rap/t", options)], None).await;
    let mut clear = Client::connect(broker.addr, V5, "rap0").await;
    clear.subscribe("rap/t", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(broker.addr, V5, "rapp").await;
    publisher
        .publish("rap/t", "r", QoS::AtLeastOnce, true)
        .await;
    assert!(keep.recv_and_ack().await.retain);
    assert!(!clear.recv_and_ack().await.retain);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// [MQTT-3.3.1-9]/[MQTT-3.3.1-10]/[MQTT-3.3.1-11] Retain Handling 0 sends retained messages at
/// every subscribe, 1 only for a new subscription, 2 never.
async fn v5_retain_handling() {
    let broker = TestBroker::start_default().await;
    let mut publisher = Client::connect(broker.addr, V5, "rh-p").await;
    publisher
        .publish("rh/t", "kept", QoS::AtLeastOnce, true)
        .await;
    let mut client = Client::connect(broker.addr, V5, "rh").await;
    let opts = |rh| {
        let mut o = SubscriptionOptions::qos(QoS::AtLeastOnce);
        o.retain_handling = rh;
        o
    };
    for (handling, expect) in [
        (RetainHandling::SendAtSubscribe, true),
        (RetainHandling::SendAtSubscribe, true),
        (RetainHandling::SendAtSubscribeIfNew, false),
        (RetainHandling::DoNotSend, false),
    ] {
        client
            .subscribe_with(&[("rh/t", opts(handling))], None)
            .await;
        if expect {
            assert!(client.recv_and_ack().await.retain);
        }
        client.ping().await;
    }
    let mut fresh = Client::connect(broker.addr, V5, "rh2").await;
    fresh
        .subscribe_with(
            &[("rh/t", opts(RetainHandling::SendAtSubscribeIfNew))],
            None,
        )
        .await;
    assert_eq!(text(&fresh.recv_and_ack().await), "kept");
    let mut never = Client::connect(broker.addr, V5, "rh3").await;
    never
        .subscribe_with(&[("rh/t", opts(RetainHandling::DoNotSend))], None)
        .await;
    never.ping().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// [MQTT-3.3.2-12] an inbound Topic Alias maps to the topic set with it; [MQTT-3.3.2-9]... an
/// alias above the broker's Topic Alias Maximum is DISCONNECT 0x94.
async fn v5_topic_alias_inbound() {
    let broker = TestBroker::start_default().await;
    let mut sub = Client::connect(broker.addr, V5, "ta-s").await;
    sub.subscribe("ta/#", QoS::AtMostOnce).await;
    let mut publisher = Client::connect(broker.addr, V5, "ta-p").await;
    let mut first = Publish::new("ta/long/topic", "1");
    first.properties.topic_alias = Some(1);
    publisher.publish_with(first, QoS::AtLeastOnce).await;
    let mut second = Publish::new("", "2");
    second.properties.topic_alias = Some(1);
    publisher.publish_with(second, QoS::AtLeastOnce).await;
    for n in ["1", "2"] {
        let p = sub.recv_publish().await;
        assert_eq!((&*p.topic, text(&p)), ("ta/long/topic", n));
        assert!(p.properties.topic_alias.is_none());
    }
    let mut bad = Publish::new("ta/x", "3");
    bad.properties.topic_alias = Some(u16::MAX);
    publisher.send(Packet::Publish(bad)).await;
    assert_eq!(
        publisher.closed().await.expect("DISCONNECT").code,
        ReasonCode::TopicAliasInvalid
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Outbound topic aliases: with a client Topic Alias Maximum the broker sends the topic once,
/// then the alias with an empty topic ([MQTT-3.3.2-10]... never above the client's maximum).
async fn v5_topic_alias_outbound() {
    let broker = TestBroker::start_default().await;
    let mut connect = Connect::new(V5, "tao");
    connect.properties.topic_alias_maximum = Some(1);
    let (mut sub, _) = Client::connect_with(broker.addr, connect).await;
    sub.subscribe("tao/#", QoS::AtMostOnce).await;
    let mut publisher = Client::connect(broker.addr, V5, "tao-p").await;
    for topic in ["tao/a", "tao/a", "tao/b"] {
        publisher.publish(topic, "x", QoS::AtLeastOnce, false).await;
    }
    let p = sub.recv_publish().await;
    assert_eq!((&*p.topic, p.properties.topic_alias), ("tao/a", Some(1)));
    let p = sub.recv_publish().await;
    assert_eq!((&*p.topic, p.properties.topic_alias), ("", Some(1)));
    let p = sub.recv_publish().await;
    assert_eq!((&*p.topic, p.properties.topic_alias), ("tao/b", None));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Properties (message expiry, response topic, correlation data, user properties, content type,
/// payload format) reach a resumed session unchanged. Expiry itself ([MQTT-3.3.2-5], the
/// interval left forwarded, [MQTT-3.3.2-6]) is tested on virtual time in
/// `broker::conn::pair::tests`, like the will delay ([MQTT-3.1.3-9]).
async fn v5_message_expiry_and_properties() {
    let broker = TestBroker::start_default().await;
    let (mut sub, _) = Client::connect_with(broker.addr, persistent(V5, "exp")).await;
    sub.subscribe("exp/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = Client::connect(broker.addr, V5, "exp-p").await;
    let mut long = Publish::new("exp/long", "kept");
    long.properties.message_expiry_interval = Some(100);
    long.properties.response_topic = Some("exp/reply".into());
    long.properties.correlation_data = Some(b"corr".to_vec().into());
    long.properties.user_properties = vec![("k".into(), "v".into())];
    long.properties.content_type = Some("text/plain".into());
    long.properties.payload_format_indicator = Some(1);
    publisher.publish_with(long, QoS::AtLeastOnce).await;
    let (mut sub, ack) = Client::connect_with(broker.addr, persistent(V5, "exp")).await;
    assert!(ack.session_present);
    let p = sub.recv_and_ack().await;
    assert_eq!(text(&p), "kept");
    let interval = p
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!((99..=100).contains(&interval), "{interval}");
    assert_eq!(p.properties.response_topic.as_deref(), Some("exp/reply"));
    assert_eq!(p.properties.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert_eq!(p.properties.user_properties, vec![("k".into(), "v".into())]);
    assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.properties.payload_format_indicator, Some(1));
    sub.ping().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// [MQTT-3.1.2-25] the broker never sends a packet larger than the client's Maximum Packet
/// Size: such a message is dropped for that client only.
async fn v5_client_maximum_packet_size() {
    let broker = TestBroker::start_default().await;
    let mut connect = Connect::new(V5, "small");
    connect.properties.maximum_packet_size = Some(64);
    let (mut small, _) = Client::connect_with(broker.addr, connect).await;
    small.subscribe("mps/#", QoS::AtLeastOnce).await;
    let mut large = Client::connect(broker.addr, V5, "large").await;
    large.subscribe("mps/#", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(broker.addr, V5, "mps-p").await;
    publisher
        .publish("mps/big", &"x".repeat(200), QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("mps/small", "s", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&*small.recv_and_ack().await.topic, "mps/small");
    assert_eq!(&*large.recv_and_ack().await.topic, "mps/big");
    assert_eq!(&*large.recv_and_ack().await.topic, "mps/small");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// [MQTT-3.3.4-9] a client sending more unacknowledged QoS 2 PUBLISHes than the broker's
/// Receive Maximum is disconnected with 0x93.
async fn v5_receive_maximum_exceeded() {
    let broker = TestBroker::start(BrokerConfig {
        sys_interval: 0,
        receive_maximum: 2,
        ..BrokerConfig::default()
    })
    .await;
    let (mut client, ack) = Client::connect_with(broker.addr, Connect::new(V5, "rm")).await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    for n in 1..=3 {
        let mut p = Publish::new("rm/t", "x");
        p.qos_pid = QosPid::ExactlyOnce(pid(n));
        client.send(Packet::Publish(p)).await;
    }
    assert_eq!(
        client.closed().await.expect("DISCONNECT").code,
        ReasonCode::ReceiveMaximumExceeded
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// Outbound Receive Maximum: the broker keeps at most the client's Receive Maximum QoS 1
/// messages unacknowledged ([MQTT-3.3.4-7]) and sends the rest as acknowledgements arrive.
async fn v5_outbound_receive_maximum() {
    let broker = TestBroker::start_default().await;
    let mut connect = Connect::new(V5, "orm");
    connect.properties.receive_maximum = Some(2);
    let (mut sub, _) = Client::connect_with(broker.addr, connect).await;
    sub.subscribe("orm/t", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(broker.addr, V5, "orm-p").await;
    for i in 0..5 {
        publisher
            .publish("orm/t", &i.to_string(), QoS::AtLeastOnce, false)
            .await;
    }
    let a = sub.recv_publish().await;
    let b = sub.recv_publish().await;
    sub.ping().await; // the third is held back
    sub.send(Packet::PubAck(PubAck::new(a.qos_pid.pid().unwrap())))
        .await;
    assert_eq!(text(&sub.recv_publish().await), "2");
    sub.send(Packet::PubAck(PubAck::new(b.qos_pid.pid().unwrap())))
        .await;
    assert_eq!(text(&sub.recv_and_ack().await), "3");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// [MQTT-3.1.2-21] Server Keep Alive: with `max_keepalive = 60` a client asking for 0 or for
/// more is told 60 in CONNACK.
async fn v5_server_keep_alive() {
    let broker = TestBroker::start(BrokerConfig {
        sys_interval: 0,
        max_keepalive: 60,
        ..BrokerConfig::default()
    })
    .await;
    for asked in [0, 600] {
        let mut connect = Connect::new(V5, format!("ska{asked}"));
        connect.keep_alive = asked;
        let (_client, ack) = Client::connect_with(broker.addr, connect).await;
        assert_eq!(ack.properties.server_keep_alive, Some(60));
    }
    let mut connect = Connect::new(V5, "ska30");
    connect.keep_alive = 30;
    let (_client, ack) = Client::connect_with(broker.addr, connect).await;
    assert_eq!(ack.properties.server_keep_alive, None);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// `Broker::publish_internal` (simulator, `$SYS`, HTTP API) reaches MQTT subscribers.
async fn internal_publish_reaches_subscribers() {
    let broker = switchboard::broker::Broker::new(BrokerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = {
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let (stream, peer) = listener.accept().await.unwrap();
            broker
                .serve_connection(stream, peer, switchboard::broker::Transport::Tcp, shutdown)
                .await;
        })
    };
    let mut client = Client::connect(addr, V5, "internal").await;
    client.subscribe("plug/+/state", QoS::AtLeastOnce).await;
    assert_eq!(
        broker.publish_internal("plug/1/state", "on", QoS::AtLeastOnce, false),
        1
    );
    let p = client.recv_and_ack().await;
    assert_eq!((&*p.topic, text(&p)), ("plug/1/state", "on"));
    assert_eq!(
        broker.publish_internal("plug/#", "bad", QoS::AtMostOnce, false),
        0
    );
    shutdown.cancel();
    server.await.unwrap();
}
