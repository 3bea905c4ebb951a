//! Test helpers: an in-process gateway on `127.0.0.1:0` and a raw MQTT client speaking packets
//! through the `switchboard-mqtt` codec. Every wait is for an event, bounded by [`TIMEOUT`].

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part of this module.

#[path = "../harness/mod.rs"]
pub mod harness;

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use switchboard::broker::BrokerConfig;
use switchboard_mqtt::{
    ByteString, BytesMut, ConnAck, Connect, Decoder, Disconnect, Packet, PacketId, ProtocolVersion,
    PubAck, PubComp, PubRec, PubRel, Publish, QoS, QosPid, ReasonCode, SubAck, Subscribe,
    SubscriptionOptions,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub use switchboard_mqtt::ProtocolVersion::{V3_1_1, V5};

/// Longest wait for any expected event.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A gateway running in-process with MQTT on an ephemeral port and no HTTP listener.
#[derive(Debug)]
pub struct TestBroker {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    running: harness::Running,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    /// Starts a gateway with `broker` settings.
    pub async fn start(broker: BrokerConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = harness::loopback(dir.path());
        config.broker = broker;
        config.listeners.http = Vec::new();
        let running = harness::Running::start(config, switchboard::RunOptions::default()).await;
        Self {
            addr: running.bound.mqtt[0],
            shutdown: running.shutdown.clone(),
            running,
            _dir: dir,
        }
    }

    /// Default settings, `$SYS` disabled so tests see only their own traffic.
    pub async fn start_default() -> Self {
        Self::start(BrokerConfig {
            sys_interval: 0,
            ..BrokerConfig::default()
        })
        .await
    }

    /// Cancels the shutdown token and waits for `run` to return.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

pub fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).expect("non-zero packet id")
}

/// A raw MQTT client.
#[derive(Debug)]
pub struct Client {
    pub stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    pub version: ProtocolVersion,
    next_pid: u16,
}

impl Client {
    /// A TCP connection, nothing sent yet.
    pub async fn raw(addr: SocketAddr, version: ProtocolVersion) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let mut decoder = Decoder::new(u32::MAX);
        decoder.set_version(version);
        Self {
            stream,
            decoder,
            buf: BytesMut::new(),
            version,
            next_pid: 0,
        }
    }

    /// Connects with `connect` and returns the CONNACK.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (Self, ConnAck) {
        let mut client = Self::raw(addr, connect.protocol).await;
        client.send(Packet::Connect(Box::new(connect))).await;
        match client.recv().await {
            Packet::ConnAck(ack) => (client, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with clean start and asserts success.
    pub async fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> Self {
        let (client, ack) = Self::connect_with(addr, Connect::new(version, client_id)).await;
        assert_eq!(ack.code, ReasonCode::Success, "{ack:?}");
        client
    }

    pub fn next_pid(&mut self) -> PacketId {
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        pid(self.next_pid)
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encode");
        self.send_bytes(&out).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next packet, or `None` when the connection closed.
    pub async fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self
                .decoder
                .decode(&mut self.buf)
                .expect("valid packet from broker")
            {
                return Some(packet);
            }
            let read = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("packet or close within the timeout");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next packet; panics on close.
    pub async fn recv(&mut self) -> Packet {
        self.next().await.expect("connection open")
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Receives a PUBLISH and acknowledges it as its QoS requires.
    pub async fn recv_and_ack(&mut self) -> Publish {
        let p = self.recv_publish().await;
        match p.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => self.send(Packet::PubAck(PubAck::new(id))).await,
            QosPid::ExactlyOnce(id) => {
                self.send(Packet::PubRec(PubRec::new(id))).await;
                match self.recv().await {
                    Packet::PubRel(rel) => assert_eq!(rel.pid, id),
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(Packet::PubComp(PubComp::new(id))).await;
            }
        }
        p
    }

    /// Reads until the broker closes the connection; returns the DISCONNECT it sent, if any.
    pub async fn closed(&mut self) -> Option<Disconnect> {
        let mut last = None;
        while let Some(packet) = self.next().await {
            if let Packet::Disconnect(d) = packet {
                last = Some(d);
            }
        }
        last
    }

    pub async fn subscribe_with(
        &mut self,
        filters: &[(&str, SubscriptionOptions)],
        id: Option<u32>,
    ) -> SubAck {
        let pid = self.next_pid();
        let mut subscribe = Subscribe {
            pid,
            filters: filters
                .iter()
                .map(|(f, o)| (ByteString::from(*f), *o))
                .collect(),
            properties: Default::default(),
        };
        if let Some(id) = id {
            subscribe.properties.subscription_identifiers.push(id);
        }
        self.send(Packet::Subscribe(subscribe)).await;
        match self.recv().await {
            Packet::SubAck(ack) => {
                assert_eq!(ack.pid, pid);
                ack
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        self.subscribe_with(&[(filter, SubscriptionOptions::qos(qos))], None)
            .await
    }

    /// Publishes and completes the QoS flow (PUBACK, or PUBREC/PUBREL/PUBCOMP).
    pub async fn publish_with(&mut self, mut publish: Publish, qos: QoS) {
        let id = self.next_pid();
        publish.qos_pid = QosPid::new(qos, id);
        self.send(Packet::Publish(publish)).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => match self.recv().await {
                Packet::PubAck(ack) => assert_eq!(ack.pid, id),
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                match self.recv().await {
                    Packet::PubRec(rec) => assert_eq!(rec.pid, id),
                    other => panic!("expected PUBREC, got {other:?}"),
                }
                self.send(Packet::PubRel(PubRel::new(id))).await;
                match self.recv().await {
                    Packet::PubComp(comp) => assert_eq!(comp.pid, id),
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: &str, qos: QoS, retain: bool) {
        let mut p = Publish::new(topic.to_owned(), payload.as_bytes().to_vec());
        p.retain = retain;
        self.publish_with(p, qos).await;
    }

    /// Round trip through the broker: everything the broker sent before this is read first.
    pub async fn ping(&mut self) {
        self.send(Packet::PingReq).await;
        match self.recv().await {
            Packet::PingResp => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect(Disconnect::default())).await;
        assert!(self.closed().await.is_none());
    }
}

/// Payload of a PUBLISH as text.
pub fn text(p: &Publish) -> &str {
    std::str::from_utf8(&p.payload).expect("utf-8 payload")
}
