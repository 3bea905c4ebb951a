//! How a connection ends and when its packets take effect, over real loopback sockets: a client
//! the server disconnects keeps writing and still reads why (no reset), and a SUBSCRIBE takes
//! effect when it is read, even while an earlier acknowledgement waits for the store (the real
//! redb store, its commits held back by a gate the test opens).

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use common::{Client, TIMEOUT, TestBroker, V3_1_1, V5, pid};
use switchboard::broker::{
    Broker, BrokerConfig, CommitObserver, ConfigAuthorizer, Message, QueuedMessage, RedbStore,
    Restored, Store, StoreConfig, StoreError, Ticket, Transport,
};
use switchboard_mqtt::{
    BytesMut, Connect, Packet, PacketId, Publish, QoS, QosPid, ReasonCode, Subscribe,
    SubscriptionOptions,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// The server closes like an HTTP server: DISCONNECT, shut down its write side, drain what the
/// client still sends for a while, then close. A client that pipelined more packets behind the
/// one that broke the rule keeps writing without a broken pipe, and reads the DISCONNECT and a
/// clean end of stream, not a reset.
async fn a_client_still_writing_reads_its_disconnect_without_a_reset() {
    let broker = TestBroker::start(BrokerConfig {
        sys_interval: 0,
        receive_maximum: 2,
        ..BrokerConfig::default()
    })
    .await;
    let (client, ack) = Client::connect_with(broker.addr, Connect::new(V5, "greedy")).await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    let mut stream = client.stream;
    // Three QoS 2 publications (one over Receive Maximum), then 100 KiB of QoS 0 ones.
    let mut burst = BytesMut::new();
    for n in 1..=3 {
        let mut p = Publish::new("rm/t", "x");
        p.qos_pid = QosPid::ExactlyOnce(pid(n));
        Packet::Publish(p).encode(V5, &mut burst).unwrap();
    }
    let filler = Packet::Publish(Publish::new("rm/t", vec![b'.'; 1000]));
    for _ in 0..100 {
        filler.encode(V5, &mut burst).unwrap();
    }
    stream.write_all(&burst).await.expect("burst written");
    // PUBREC, PUBREC, then DISCONNECT 0x93: the server has closed its side of the session.
    let mut buf = BytesMut::new();
    let mut decoder = switchboard_mqtt::Decoder::new(u32::MAX);
    decoder.set_version(V5);
    let mut packets = Vec::new();
    read(&mut stream, &mut decoder, &mut buf, &mut packets, true).await;
    // The client has not processed it yet and goes on writing what it had queued.
    let mut chunk = BytesMut::new();
    for _ in 0..16 {
        filler.encode(V5, &mut chunk).unwrap();
    }
    for round in 0..8 {
        if let Err(err) = stream.write_all(&chunk).await {
            panic!("write {round} after the DISCONNECT failed: {err}");
        }
    }
    // Then it reads on: a clean end of stream, not a reset.
    read(&mut stream, &mut decoder, &mut buf, &mut packets, false).await;
    let Some(Packet::Disconnect(disconnect)) = packets.last() else {
        panic!("no DISCONNECT: {packets:?}");
    };
    assert_eq!(disconnect.code, ReasonCode::ReceiveMaximumExceeded);
    broker.stop().await;
}

/// Reads packets into `packets`, up to a DISCONNECT (`until_disconnect`) or to the end of the
/// stream; panics on a read error (a reset) or when nothing comes in time.
async fn read(
    stream: &mut tokio::net::TcpStream,
    decoder: &mut switchboard_mqtt::Decoder,
    buf: &mut BytesMut,
    packets: &mut Vec<Packet>,
    until_disconnect: bool,
) {
    loop {
        while let Some(packet) = decoder.decode(buf).expect("valid packets") {
            let done = matches!(packet, Packet::Disconnect(_));
            packets.push(packet);
            if done && until_disconnect {
                return;
            }
        }
        match tokio::time::timeout(TIMEOUT, stream.read_buf(buf)).await {
            Err(_) => panic!("nothing more in time; read {packets:?}"),
            Ok(Ok(0)) if !until_disconnect => return,
            Ok(Ok(0)) => panic!("end of stream before a DISCONNECT: {packets:?}"),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => panic!("read failed after {packets:?}: {err}"),
        }
    }
}

/// The redb store with its commits held until the test opens the gate: a slow disk, under
/// the test's control. Every change is the real store's.
#[derive(Debug)]
struct GatedStore {
    inner: RedbStore,
    open: watch::Sender<bool>,
    /// How many times a connection waited for a commit while the gate was shut.
    waiting: watch::Sender<usize>,
    /// How many subscriptions were recorded.
    subscribed: watch::Sender<usize>,
}

impl Store for GatedStore {
    fn retained_set(&self, msg: &Message) -> Result<Ticket, StoreError> {
        self.inner.retained_set(msg)
    }
    fn retained_deleted(&self, topic: &str) -> Ticket {
        self.inner.retained_deleted(topic)
    }
    fn session_opened(&self, client_id: &str, expiry_interval: u32, clean: bool) -> Ticket {
        self.inner.session_opened(client_id, expiry_interval, clean)
    }
    fn session_detached(&self, client_id: &str, expiry_interval: u32) -> Ticket {
        self.inner.session_detached(client_id, expiry_interval)
    }
    fn session_ended(&self, client_id: &str) -> Ticket {
        self.inner.session_ended(client_id)
    }
    fn subscribed(
        &self,
        client_id: &str,
        filter: &str,
        options: &SubscriptionOptions,
        id: Option<u32>,
    ) -> Ticket {
        let ticket = self.inner.subscribed(client_id, filter, options, id);
        self.subscribed.send_modify(|n| *n += 1);
        ticket
    }
    fn unsubscribed(&self, client_id: &str, filter: &str) -> Ticket {
        self.inner.unsubscribed(client_id, filter)
    }
    fn message_queued(
        &self,
        client_id: &str,
        id: u64,
        msg: &QueuedMessage<'_>,
    ) -> Result<Ticket, StoreError> {
        self.inner.message_queued(client_id, id, msg)
    }
    fn message_sent(&self, client_id: &str, id: u64, pid: PacketId) -> Ticket {
        self.inner.message_sent(client_id, id, pid)
    }
    fn message_released(&self, client_id: &str, id: u64, pid: PacketId) -> Ticket {
        self.inner.message_released(client_id, id, pid)
    }
    fn message_acked(&self, client_id: &str, id: u64) -> Ticket {
        self.inner.message_acked(client_id, id)
    }
    fn qos2_received(&self, client_id: &str, pid: PacketId) -> Ticket {
        self.inner.qos2_received(client_id, pid)
    }
    fn qos2_released(&self, client_id: &str, pid: PacketId) -> Ticket {
        self.inner.qos2_released(client_id, pid)
    }
    fn will_delayed(&self, client_id: &str, will: &Message, at: SystemTime) -> Ticket {
        self.inner.will_delayed(client_id, will, at)
    }
    fn will_armed(&self, client_id: &str, will: &Message, delay: u32) -> Ticket {
        self.inner.will_armed(client_id, will, delay)
    }
    fn will_cleared(&self, client_id: &str) -> Ticket {
        self.inner.will_cleared(client_id)
    }
    fn next_id(&self) -> u64 {
        self.inner.next_id()
    }
    fn committed(&self, ticket: Ticket) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut open = self.open.subscribe();
        if !*open.borrow() {
            self.waiting.send_modify(|n| *n += 1);
        }
        Box::pin(async move {
            let _ = open.wait_for(|open| *open).await;
            self.inner.committed(ticket).await;
        })
    }
    fn lost(&self, from: Ticket, to: Ticket) -> bool {
        self.inner.lost(from, to)
    }
    fn on_commit(&self, observe: CommitObserver) {
        self.inner.on_commit(observe);
    }
    fn take_restored(&self) -> Restored {
        self.inner.take_restored()
    }
    fn close(&self) {
        self.inner.close();
    }
}

/// A broker on the gated store, serving 127.0.0.1:0.
async fn gated_broker(
    dir: &std::path::Path,
) -> (Broker, Arc<GatedStore>, SocketAddr, CancellationToken) {
    let store = Arc::new(GatedStore {
        inner: RedbStore::open(&dir.join("store.redb"), &StoreConfig::default()).expect("store"),
        open: watch::channel(true).0,
        waiting: watch::channel(0).0,
        subscribed: watch::channel(0).0,
    });
    let config = BrokerConfig {
        sys_interval: 0,
        ..BrokerConfig::default()
    };
    let authorizer = Arc::new(ConfigAuthorizer::new(Vec::new()));
    let broker = Broker::with_parts(config, Arc::clone(&store) as Arc<dyn Store>, authorizer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let (b, token) = (broker.clone(), shutdown.clone());
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let (b, token) = (b.clone(), token.clone());
            tokio::spawn(async move {
                b.serve_connection(stream, peer, Transport::Tcp, token)
                    .await
            });
        }
    });
    (broker, store, addr, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// A client with a persistent session sends SUBSCRIBE right behind CONNECT; its CONNACK waits
/// for the session's commit. The SUBSCRIBE is in force as soon as it is read: a message
/// published before any answer reaches the client (Mosquitto's behaviour; before, the
/// connection read nothing while it waited for the commit, and the message was lost).
async fn a_subscribe_behind_connect_takes_effect_before_the_connack_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, store, addr, shutdown) = gated_broker(dir.path()).await;
    let mut publisher = Client::connect(addr, V5, "publisher").await;
    for version in [V3_1_1, V5] {
        store.open.send_replace(false);
        let mut waiting = store.waiting.subscribe();
        let mut subscribed = store.subscribed.subscribe();
        let (waits, subs) = (
            *waiting.borrow_and_update(),
            *subscribed.borrow_and_update(),
        );

        let mut b = Client::raw(addr, version).await;
        let mut connect = Connect::new(version, format!("b-{version:?}"));
        connect.clean_start = false;
        if version == V5 {
            connect.properties.session_expiry_interval = Some(3600);
        }
        b.send(Packet::Connect(Box::new(connect))).await;
        // The connection now waits for the commit of the session's opening (its CONNACK).
        tokio::time::timeout(TIMEOUT, waiting.wait_for(|n| *n > waits))
            .await
            .expect("the CONNACK waits for a commit")
            .unwrap();
        b.send(Packet::Subscribe(Subscribe {
            pid: pid(1),
            filters: vec![("lamp/+".into(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
            properties: Default::default(),
        }))
        .await;
        // The subscription is in the index (and recorded) with nothing answered yet.
        tokio::time::timeout(TIMEOUT, subscribed.wait_for(|n| *n > subs))
            .await
            .expect("SUBSCRIBE in force while the CONNACK waits for its commit")
            .unwrap();
        publisher
            .publish("lamp/1", "on", QoS::AtMostOnce, false)
            .await;
        store.open.send_replace(true);

        assert!(matches!(b.recv().await, Packet::ConnAck(ack) if ack.code == ReasonCode::Success));
        assert!(matches!(b.recv().await, Packet::SubAck(_)));
        let message = b.recv_publish().await;
        assert_eq!(&*message.topic, "lamp/1");
        assert_eq!(&message.payload[..], b"on");
    }
    shutdown.cancel();
}
