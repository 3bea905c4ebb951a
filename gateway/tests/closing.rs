//! How a connection ends and when its packets take effect, over real loopback sockets: a client
//! the server disconnects keeps writing and still reads why (no reset), and a SUBSCRIBE takes
//! effect when it is read, even while an earlier acknowledgement waits for the store (the real
//! redb store, its commits held back by a gate the test opens).

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use common::{Client, TIMEOUT, TestBroker, V5, pid};
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
    // The client goes on writing for a while (it has not read anything yet).
    let mut chunk = BytesMut::new();
    for _ in 0..16 {
        filler.encode(V5, &mut chunk).unwrap();
    }
    for round in 0..8 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Err(err) = stream.write_all(&chunk).await {
            panic!("write {round} after the DISCONNECT failed: {err}");
        }
    }
    // Now it reads: PUBREC, PUBREC, DISCONNECT 0x93, then end of stream.
    let mut buf = BytesMut::new();
    let mut decoder = switchboard_mqtt::Decoder::new(u32::MAX);
    decoder.set_version(V5);
    let mut packets = Vec::new();
    loop {
        while let Some(packet) = decoder.decode(&mut buf).expect("valid packets") {
            packets.push(packet);
        }
        match tokio::time::timeout(TIMEOUT, stream.read_buf(&mut buf)).await {
            Err(_) => panic!("no end of stream; read {packets:?}"),
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(err)) => panic!("read failed after {packets:?}: {err}"),
        }
    }
    let Some(Packet::Disconnect(disconnect)) = packets.last() else {
        panic!("no DISCONNECT: {packets:?}");
    };
    assert_eq!(disconnect.code, ReasonCode::ReceiveMaximumExceeded);
    broker.stop().await;
}

/// The redb store with its commits held until the test opens the gate: a slow disk, under
/// the test's control. Every change is the real store's.
#[derive(Debug)]
struct GatedStore {
    inner: RedbStore,
    open: watch::Sender<bool>,
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
        self.inner.subscribed(client_id, filter, options, id)
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
    let (broker, store, addr, shutdown) = gated_broker(dir.path()).await;
    let publisher = Client::connect(addr, V5, "publisher").await;
    store.open.send_replace(false);

    let mut b = Client::raw(addr, V5).await;
    let mut connect = Connect::new(V5, "b");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    b.send(Packet::Connect(Box::new(connect))).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.send(Packet::Subscribe(Subscribe {
        pid: pid(1),
        filters: vec![("lamp/+".into(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
        properties: Default::default(),
    }))
    .await;
    // Wait (bounded) until the subscription is in the index, with nothing answered yet.
    let in_force = async {
        while broker.metrics().subscriptions.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, in_force)
        .await
        .expect("SUBSCRIBE in force while the CONNACK waits for its commit");
    let mut publisher = publisher;
    publisher
        .publish("lamp/1", "on", QoS::AtMostOnce, false)
        .await;
    store.open.send_replace(true);

    assert!(matches!(b.recv().await, Packet::ConnAck(ack) if ack.code == ReasonCode::Success));
    assert!(matches!(b.recv().await, Packet::SubAck(_)));
    let message = b.recv_publish().await;
    assert_eq!(&*message.topic, "lamp/1");
    assert_eq!(&message.payload[..], b"on");
    shutdown.cancel();
}
