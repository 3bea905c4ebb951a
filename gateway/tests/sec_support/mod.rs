//! Helpers for `security.rs` and `bad_input.rs`: an in-process gateway with a full
//! [`Config`], and a raw MQTT client over any byte stream (TCP, or WebSocket through the
//! gateway's own `WsByteStream` adapter). Every wait is for an event, bounded by [`TIMEOUT`].

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part of this module.

#[path = "../harness/mod.rs"]
pub mod harness;

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::time::Duration;

use switchboard::config::Config;
use switchboard::ws::WsByteStream;
use switchboard_mqtt::{
    ByteString, BytesMut, ConnAck, Connect, Decoder, Packet, ProtocolVersion, PubAck, Publish, QoS,
    QosPid, ReasonCode, Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, connect_async};

pub use switchboard_mqtt::ProtocolVersion::{V3_1_1, V5};

/// Longest wait for any expected event.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A gateway running in-process with MQTT and HTTP on ephemeral loopback ports.
#[derive(Debug)]
pub struct Gateway {
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    running: harness::Running,
    _dir: Option<tempfile::TempDir>,
}

impl Gateway {
    /// Starts a gateway; `configure` edits the configuration first (the data directory is a
    /// fresh temporary one unless `configure` sets another).
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = harness::loopback(dir.path());
        configure(&mut config);
        let data_dir = config.data_dir.clone();
        let running = harness::Running::start(config, switchboard::RunOptions::default()).await;
        Self {
            mqtt: running.bound.mqtt[0],
            http: running.bound.http[0],
            data_dir,
            running,
            _dir: Some(dir),
        }
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }

    /// A WebSocket to `/mqtt` + `query` with extra headers.
    pub async fn ws(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
        ws_connect(self.http, query, headers).await
    }
}

/// The client side of an MQTT WebSocket as a byte stream.
pub type WsStream = WsByteStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `http` `/mqtt` + `query`.
pub async fn ws_connect(
    http: SocketAddr,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{http}/mqtt{query}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let (ws, _) = tokio::time::timeout(TIMEOUT, connect_async(request))
        .await
        .expect("handshake in time")?;
    Ok(WsByteStream::new(ws))
}

/// A raw MQTT client over any byte stream.
#[derive(Debug)]
pub struct Mq<S> {
    pub io: S,
    decoder: Decoder,
    buf: BytesMut,
    pub version: ProtocolVersion,
    next_pid: u16,
}

pub async fn tcp(addr: SocketAddr, version: ProtocolVersion) -> Mq<TcpStream> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    Mq::new(stream, version)
}

pub fn connect_packet(
    version: ProtocolVersion,
    id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Connect {
    let mut c = Connect::new(version, id);
    c.username = user.map(ByteString::from);
    c.password = password.map(|p| p.as_bytes().to_vec().into());
    c
}

impl<S: AsyncRead + AsyncWrite + Unpin> Mq<S> {
    pub fn new(io: S, version: ProtocolVersion) -> Self {
        let mut decoder = Decoder::new(u32::MAX);
        decoder.set_version(version);
        Self {
            io,
            decoder,
            buf: BytesMut::new(),
            version,
            next_pid: 0,
        }
    }

    pub fn pid(&mut self) -> NonZeroU16 {
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        NonZeroU16::new(self.next_pid).unwrap()
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encode");
        self.send_bytes(&out).await;
    }

    /// Writes raw bytes; false when the peer has closed.
    pub async fn try_send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.io.write_all(bytes).await.is_ok() && self.io.flush().await.is_ok()
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        assert!(self.try_send_bytes(bytes).await, "write");
    }

    /// The next packet, `None` when the connection closed; panics after [`TIMEOUT`].
    pub async fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).expect("valid packet") {
                return Some(packet);
            }
            let read = tokio::time::timeout(TIMEOUT, self.io.read_buf(&mut self.buf))
                .await
                .expect("packet or close within the timeout");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub async fn recv(&mut self) -> Packet {
        self.next().await.expect("connection open")
    }

    /// Sends CONNECT and returns the CONNACK.
    pub async fn connect(&mut self, connect: Connect) -> ConnAck {
        self.send(Packet::Connect(Box::new(connect))).await;
        match self.recv().await {
            Packet::ConnAck(ack) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Sends CONNECT; the CONNACK's code, or `None` when closed without one.
    pub async fn try_connect(&mut self, connect: Connect) -> Option<ReasonCode> {
        self.send(Packet::Connect(Box::new(connect))).await;
        match self.next().await? {
            Packet::ConnAck(ack) => Some(ack.code),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter; the SUBACK code.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> ReasonCode {
        let pid = self.pid();
        self.send(Packet::Subscribe(Subscribe {
            pid,
            filters: vec![(ByteString::from(filter), SubscriptionOptions::qos(qos))],
            properties: Default::default(),
        }))
        .await;
        loop {
            match self.recv().await {
                Packet::SubAck(ack) if ack.pid == pid => return ack.codes[0],
                Packet::Publish(_) => {}
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    /// Publishes; for QoS 1 waits for the PUBACK and returns its code (publications received
    /// meanwhile are acknowledged and returned too).
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &str,
        qos: QoS,
        retain: bool,
    ) -> (Option<ReasonCode>, Vec<Publish>) {
        let mut p = Publish::new(topic.to_owned(), payload.as_bytes().to_vec());
        p.retain = retain;
        let pid = self.pid();
        p.qos_pid = QosPid::new(qos, pid);
        self.send(Packet::Publish(p)).await;
        let mut seen = Vec::new();
        if qos == QoS::AtMostOnce {
            return (None, seen);
        }
        loop {
            match self.recv().await {
                Packet::PubAck(ack) if ack.pid == pid => return (Some(ack.code), seen),
                Packet::Publish(p) => {
                    self.ack(&p).await;
                    seen.push(p);
                }
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
    }

    async fn ack(&mut self, p: &Publish) {
        if let QosPid::AtLeastOnce(id) = p.qos_pid {
            self.send(Packet::PubAck(PubAck::new(id))).await;
        }
    }

    /// Every PUBLISH received before the PINGRESP answering a PINGREQ sent now.
    pub async fn drain(&mut self) -> Vec<Publish> {
        self.send(Packet::PingReq).await;
        let mut seen = Vec::new();
        loop {
            match self.recv().await {
                Packet::PingResp => return seen,
                Packet::UnsubAck(_) => {}
                Packet::Publish(p) => {
                    self.ack(&p).await;
                    seen.push(p);
                }
                other => panic!("expected PUBLISH or PINGRESP, got {other:?}"),
            }
        }
    }

    /// Payloads of the PUBLISHes received up to and including one with `last` as payload.
    /// Messages from one publisher keep their order, so a permitted `last` published after
    /// forbidden ones proves those were not delivered.
    pub async fn recv_until(&mut self, last: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let p = self.recv_publish().await;
            let payload = text(&p).to_owned();
            seen.push(payload.clone());
            if payload == last {
                return seen;
            }
        }
    }

    /// The next PUBLISH (acknowledged).
    pub async fn recv_publish(&mut self) -> Publish {
        loop {
            match self.recv().await {
                Packet::Publish(p) => {
                    self.ack(&p).await;
                    return p;
                }
                Packet::PingResp => {}
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }

    /// Reads until the broker closes; the last DISCONNECT it sent, if any.
    pub async fn closed(&mut self) -> Option<switchboard_mqtt::Disconnect> {
        let mut last = None;
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Packet::Disconnect(d))) => last = Some(d),
                Ok(Some(_)) => {}
                Ok(None) => {
                    let read = tokio::time::timeout(TIMEOUT, self.io.read_buf(&mut self.buf))
                        .await
                        .expect("closed within the timeout");
                    match read {
                        Ok(0) | Err(_) => return last,
                        Ok(_) => {}
                    }
                }
                Err(_) => return last,
            }
        }
    }
}

/// Reads raw bytes until the peer closes; panics unless it closes within [`TIMEOUT`].
pub async fn assert_cut_off<S: AsyncRead + Unpin>(io: &mut S, what: &str) {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Err(_) => panic!("{what}: not cut off within {TIMEOUT:?}"),
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

pub fn text(p: &Publish) -> &str {
    std::str::from_utf8(&p.payload).expect("utf-8")
}

/// Path of `mosquitto_passwd`, or a panic telling how to install it.
pub fn mosquitto_passwd() -> PathBuf {
    let path = PathBuf::from("/usr/bin/mosquitto_passwd");
    assert!(
        path.exists(),
        "mosquitto_passwd is missing: run `cargo xtask setup` (Debian package `mosquitto`)"
    );
    path
}
