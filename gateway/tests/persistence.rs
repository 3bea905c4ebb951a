//! Durable sessions and retained messages: the gateway is stopped and started again on the same
//! data directory (in-process), and what was acknowledged before must be there after.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{Client, V3_1_1, V5, harness, pid, text};
use switchboard::broker::DurabilityMode;
use switchboard::config::Config;
use switchboard_mqtt::{
    Connect, LastWill, Packet, PubAck, PubComp, PubRec, PubRel, Publish, QoS, QosPid, ReasonCode,
    SubscriptionOptions,
};

/// A gateway running in-process on `dir`.
struct Gateway {
    addr: SocketAddr,
    running: harness::Running,
}

impl Gateway {
    async fn start(dir: &Path) -> Self {
        Self::start_with(dir, |_| {}).await
    }

    async fn start_with(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = harness::loopback(dir);
        config.listeners.http = Vec::new();
        tweak(&mut config);
        let running = harness::Running::start(config, switchboard::RunOptions::default()).await;
        Self {
            addr: running.bound.mqtt[0],
            running,
        }
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

/// A v5 CONNECT with a session that outlives the connection.
fn persistent(client_id: &str, clean_start: bool) -> Connect {
    let mut c = Connect::new(V5, client_id);
    c.clean_start = clean_start;
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// Receives until a PINGRESP (a PINGREQ is sent first), acknowledging every PUBLISH (QoS 2:
/// PUBREC, then PUBCOMP for its PUBREL) and answering PUBRELs; returns the PUBLISHes and the
/// packet ids of the PUBRELs, in order.
async fn drain(client: &mut Client) -> (Vec<Publish>, Vec<u16>) {
    client.send(Packet::PingReq).await;
    let (mut got, mut rels) = (Vec::new(), Vec::new());
    // QoS 2 exchanges waiting for their PUBREL.
    let mut open = std::collections::HashSet::new();
    loop {
        match client.recv().await {
            Packet::PingResp if open.is_empty() => return (got, rels),
            Packet::PingResp => client.send(Packet::PingReq).await,
            Packet::Publish(p) => {
                match p.qos_pid {
                    QosPid::AtMostOnce => {}
                    QosPid::AtLeastOnce(id) => client.send(Packet::PubAck(PubAck::new(id))).await,
                    QosPid::ExactlyOnce(id) => {
                        open.insert(id);
                        client.send(Packet::PubRec(PubRec::new(id))).await;
                    }
                }
                got.push(p);
            }
            Packet::PubRel(rel) => {
                open.remove(&rel.pid);
                rels.push(rel.pid.get());
                client.send(Packet::PubComp(PubComp::new(rel.pid))).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn connect(addr: SocketAddr, connect: Connect, present: bool) -> Client {
    let (client, ack) = Client::connect_with(addr, connect).await;
    assert_eq!(ack.code, ReasonCode::Success, "{ack:?}");
    assert_eq!(ack.session_present, present, "{ack:?}");
    client
}

#[tokio::test]
async fn retained_messages_survive_with_their_properties() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path()).await;
    let mut publisher = Client::connect(gw.addr, V5, "pub").await;
    let mut p = Publish::new("plug/1/state".to_owned(), b"ON".to_vec());
    p.retain = true;
    p.properties.content_type = Some("text/plain".into());
    p.properties.message_expiry_interval = Some(3600);
    p.properties.user_properties.push(("k".into(), "v".into()));
    publisher.publish_with(p, QoS::AtLeastOnce).await;
    publisher
        .publish("plug/2/state", "OFF", QoS::AtMostOnce, true)
        .await;
    // Deleted before the restart: must stay deleted.
    publisher
        .publish("plug/3/state", "x", QoS::AtLeastOnce, true)
        .await;
    publisher
        .publish("plug/3/state", "", QoS::AtLeastOnce, true)
        .await;
    publisher.disconnect().await;
    gw.stop().await;

    let gw = Gateway::start(dir.path()).await;
    let mut sub = Client::connect(gw.addr, V5, "sub").await;
    sub.subscribe("plug/+/state", QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(sub.recv_and_ack().await);
    }
    sub.ping().await;
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(&*got[0].topic, "plug/1/state");
    assert_eq!(text(&got[0]), "ON");
    assert!(got[0].retain);
    assert_eq!(
        got[0].properties.content_type.as_deref(),
        Some("text/plain")
    );
    assert_eq!(got[0].properties.user_properties.len(), 1);
    let left = got[0].properties.message_expiry_interval.unwrap();
    assert!(left > 3500 && left <= 3600, "{left}");
    assert_eq!(&*got[1].topic, "plug/2/state");
    assert_eq!(got[1].qos_pid, QosPid::AtMostOnce);
    gw.stop().await;
}

#[tokio::test]
async fn subscriptions_and_queued_messages_survive() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path()).await;
    let mut sub = connect(gw.addr, persistent("sub", true), false).await;
    let ack = sub
        .subscribe_with(
            &[("a/+", SubscriptionOptions::qos(QoS::AtLeastOnce))],
            Some(7),
        )
        .await;
    assert_eq!(ack.codes, [ReasonCode::GrantedQoS1]);
    let mut no_local = SubscriptionOptions::qos(QoS::ExactlyOnce);
    no_local.retain_as_published = true;
    sub.subscribe_with(&[("b/#", no_local)], None).await;
    sub.disconnect().await;

    let mut publisher = Client::connect(gw.addr, V5, "pub").await;
    publisher
        .publish("a/1", "one", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("b/x/y", "two", QoS::ExactlyOnce, true)
        .await;
    publisher
        .publish("a/2", "lost-qos0", QoS::AtMostOnce, false)
        .await;
    publisher.disconnect().await;
    gw.stop().await;

    let gw = Gateway::start(dir.path()).await;
    // Routable before the subscriber comes back.
    let mut publisher = Client::connect(gw.addr, V5, "pub").await;
    publisher
        .publish("a/3", "three", QoS::AtLeastOnce, false)
        .await;
    publisher.disconnect().await;

    let mut sub = connect(gw.addr, persistent("sub", false), true).await;
    let (got, _) = drain(&mut sub).await;
    let texts: Vec<_> = got.iter().map(text).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(got[0].properties.subscription_identifiers, [7]);
    assert!(matches!(got[1].qos_pid, QosPid::ExactlyOnce(_)));
    assert!(got[1].retain, "retain as published");
    assert_eq!(got[2].properties.subscription_identifiers, [7]);
    sub.disconnect().await;
    gw.stop().await;

    // Everything was acknowledged: nothing comes again.
    let gw = Gateway::start(dir.path()).await;
    let mut sub = connect(gw.addr, persistent("sub", false), true).await;
    sub.ping().await;
    // A clean start forgets the session, also on disk.
    drop(sub);
    let sub = connect(gw.addr, persistent("sub", true), false).await;
    sub.disconnect().await;
    gw.stop().await;
    let gw = Gateway::start(dir.path()).await;
    let mut publisher = Client::connect(gw.addr, V5, "pub").await;
    publisher
        .publish("a/4", "four", QoS::AtLeastOnce, false)
        .await;
    let mut sub = connect(gw.addr, persistent("sub", false), true).await;
    sub.ping().await;
    gw.stop().await;
}

#[tokio::test]
async fn mqtt_3_1_1_persistent_sessions_survive() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path()).await;
    let mut c = Connect::new(V3_1_1, "old");
    c.clean_start = false;
    let mut sub = connect(gw.addr, c.clone(), false).await;
    sub.subscribe("v3/#", QoS::ExactlyOnce).await;
    sub.disconnect().await;
    let mut publisher = Client::connect(gw.addr, V3_1_1, "pub").await;
    publisher
        .publish("v3/a", "queued", QoS::ExactlyOnce, false)
        .await;
    publisher.disconnect().await;
    gw.stop().await;

    let gw = Gateway::start(dir.path()).await;
    let mut sub = connect(gw.addr, c, true).await;
    let (got, _) = drain(&mut sub).await;
    let texts: Vec<_> = got.iter().map(text).collect();
    assert_eq!(texts, ["queued"]);
    gw.stop().await;
}

#[tokio::test]
async fn outgoing_in_flight_state_survives() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path()).await;
    let mut sub = connect(gw.addr, persistent("sub", true), false).await;
    sub.subscribe("q2", QoS::ExactlyOnce).await;
    sub.subscribe("q1", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(gw.addr, V5, "pub").await;
    publisher
        .publish("q2", "two", QoS::ExactlyOnce, false)
        .await;
    publisher
        .publish("q1", "one", QoS::AtLeastOnce, false)
        .await;
    // Received, not acknowledged.
    let first = sub.recv_publish().await;
    let QosPid::ExactlyOnce(id2) = first.qos_pid else {
        panic!("{first:?}")
    };
    let second = sub.recv_publish().await;
    assert_eq!(text(&second), "one");
    gw.stop().await;
    drop(sub);

    let gw = Gateway::start(dir.path()).await;
    let mut sub = connect(gw.addr, persistent("sub", false), true).await;
    let again = sub.recv_publish().await;
    assert!(again.dup);
    assert_eq!(again.qos_pid, QosPid::ExactlyOnce(id2), "same packet id");
    assert_eq!(text(&again), "two");
    let one = sub.recv_publish().await;
    assert_eq!(text(&one), "one");
    sub.send(Packet::PubRec(PubRec::new(id2))).await;
    match sub.recv().await {
        Packet::PubRel(rel) => assert_eq!(rel.pid, id2),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    gw.stop().await;
    drop(sub);

    // PUBREL pending: the broker sends PUBREL again, not the PUBLISH.
    let gw = Gateway::start(dir.path()).await;
    let mut sub = connect(gw.addr, persistent("sub", false), true).await;
    let (got, rels) = drain(&mut sub).await;
    assert_eq!(
        rels,
        [id2.get()],
        "PUBREL again for the released QoS 2 message"
    );
    let texts: Vec<_> = got.iter().map(text).collect();
    assert_eq!(
        texts,
        ["one"],
        "only the unacknowledged QoS 1 message comes again"
    );
    sub.disconnect().await;
    gw.stop().await;

    // All complete now.
    let gw = Gateway::start(dir.path()).await;
    let mut sub = connect(gw.addr, persistent("sub", false), true).await;
    let (got, rels) = drain(&mut sub).await;
    assert!(got.is_empty() && rels.is_empty(), "{got:?} {rels:?}");
    gw.stop().await;
}

#[tokio::test]
async fn incoming_qos2_is_not_forwarded_twice_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path()).await;
    let sub = connect(gw.addr, persistent("sub", true), false).await;
    let mut sub = sub;
    sub.subscribe("t", QoS::ExactlyOnce).await;
    sub.disconnect().await;
    let mut publisher = connect(gw.addr, persistent("pub", true), false).await;
    let mut p = Publish::new("t".to_owned(), b"once".to_vec());
    p.qos_pid = QosPid::ExactlyOnce(pid(9));
    publisher.send(Packet::Publish(p.clone())).await;
    match publisher.recv().await {
        Packet::PubRec(rec) => assert_eq!(rec.pid, pid(9)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    gw.stop().await;
    drop(publisher);

    let gw = Gateway::start(dir.path()).await;
    let mut publisher = connect(gw.addr, persistent("pub", false), true).await;
    p.dup = true;
    publisher.send(Packet::Publish(p)).await;
    match publisher.recv().await {
        Packet::PubRec(rec) => assert_eq!(rec.pid, pid(9)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher.send(Packet::PubRel(PubRel::new(pid(9)))).await;
    match publisher.recv().await {
        Packet::PubComp(comp) => assert_eq!(comp.code, ReasonCode::Success),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let mut sub = connect(gw.addr, persistent("sub", false), true).await;
    let got = sub.recv_and_ack().await;
    assert_eq!(text(&got), "once");
    sub.ping().await;
    gw.stop().await;
}

#[tokio::test]
async fn delayed_will_survives_and_fires() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path()).await;
    let mut c = persistent("plug", true);
    let mut will = LastWill {
        topic: "plug/status".into(),
        payload: b"offline".to_vec().into(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    };
    will.properties.will_delay_interval = Some(1);
    c.will = Some(will);
    let plug = connect(gw.addr, c, false).await;
    // Abnormal end (the broker stops under the client): the will waits for its delay, and
    // `stop` returns once every connection task has detached and the store is closed.
    gw.stop().await;
    drop(plug);

    let gw = Gateway::start(dir.path()).await;
    let mut sub = Client::connect(gw.addr, V5, "watcher").await;
    sub.subscribe("plug/status", QoS::AtLeastOnce).await;
    let got = sub.recv_and_ack().await;
    assert_eq!(text(&got), "offline");
    gw.stop().await;
}

#[tokio::test]
async fn expired_sessions_are_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path()).await;
    let mut c = persistent("short", true);
    c.properties.session_expiry_interval = Some(1);
    let mut short = connect(gw.addr, c, false).await;
    short.subscribe("x", QoS::AtLeastOnce).await;
    short.disconnect().await;
    let long = connect(gw.addr, persistent("long", true), false).await;
    long.disconnect().await;
    gw.stop().await;
    // The deadline is wall-clock time: let it pass while the broker is down.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let gw = Gateway::start(dir.path()).await;
    let mut c = persistent("short", false);
    c.properties.session_expiry_interval = Some(1);
    connect(gw.addr, c, false).await;
    connect(gw.addr, persistent("long", false), true).await;
    gw.stop().await;
}

#[tokio::test]
async fn corrupt_store_is_moved_aside_and_the_broker_serves() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.redb");
    std::fs::write(&file, vec![0xA5; 64 * 1024]).unwrap();
    let gw = Gateway::start(dir.path()).await;
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("switchboard.redb.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(dir.path().join(&aside[0])).unwrap(),
        vec![0xA5; 64 * 1024],
        "the corrupt file is kept as it was"
    );
    let mut c = Client::connect(gw.addr, V5, "c").await;
    c.publish("r", "kept", QoS::AtLeastOnce, true).await;
    gw.stop().await;
    let gw = Gateway::start(dir.path()).await;
    let mut c = Client::connect(gw.addr, V5, "c").await;
    c.subscribe("r", QoS::AtLeastOnce).await;
    assert_eq!(text(&c.recv_and_ack().await), "kept");
    gw.stop().await;
}

#[tokio::test]
async fn durability_none_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let none = |c: &mut Config| c.store.durability = DurabilityMode::None;
    let gw = Gateway::start_with(dir.path(), none).await;
    let mut c = Client::connect(gw.addr, V5, "c").await;
    c.publish("r", "gone", QoS::AtLeastOnce, true).await;
    gw.stop().await;
    assert!(!dir.path().join("switchboard.redb").exists());
    let gw = Gateway::start_with(dir.path(), none).await;
    let mut c = Client::connect(gw.addr, V5, "c").await;
    c.subscribe("r", QoS::AtLeastOnce).await;
    c.ping().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_full_store_refuses_durable_publications() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with(dir.path(), |c| c.store.max_bytes = 1).await;
    let mut sub = connect(gw.addr, persistent("sub", true), false).await;
    // The SUBACK waits for the commit that measures the store and finds it over the cap.
    sub.subscribe("t", QoS::AtLeastOnce).await;
    let mut publisher = Client::connect(gw.addr, V5, "pub").await;
    let mut p = Publish::new("t".to_owned(), b"x".to_vec());
    p.qos_pid = QosPid::AtLeastOnce(pid(1));
    publisher.send(Packet::Publish(p)).await;
    match publisher.recv().await {
        Packet::PubAck(ack) => assert_eq!(ack.code, ReasonCode::QuotaExceeded),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    // Clean-session traffic still flows.
    let mut clean = Client::connect(gw.addr, V5, "clean").await;
    clean.subscribe("u", QoS::AtLeastOnce).await;
    publisher
        .publish("u", "fine", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(text(&clean.recv_and_ack().await), "fine");
    gw.stop().await;
}

#[tokio::test]
async fn batch_mode_commits_by_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let batch = |c: &mut Config| {
        c.store.durability = DurabilityMode::Batch;
        c.store.batch_interval_ms = 50;
    };
    let gw = Gateway::start_with(dir.path(), batch).await;
    let mut sub = connect(gw.addr, persistent("sub", true), false).await;
    sub.subscribe("t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = Client::connect(gw.addr, V5, "pub").await;
    publisher.publish("t", "kept", QoS::AtLeastOnce, true).await;
    gw.stop().await;

    let gw = Gateway::start_with(dir.path(), batch).await;
    let mut sub = connect(gw.addr, persistent("sub", false), true).await;
    let (got, _) = drain(&mut sub).await;
    let texts: Vec<_> = got.iter().map(text).collect();
    assert_eq!(texts, ["kept"]);
    gw.stop().await;
}
