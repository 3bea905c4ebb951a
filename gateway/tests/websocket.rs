//! MQTT over WebSocket on the HTTP listener, over real sockets: subprotocol negotiation, the
//! byte stream across and within frames, text frames, origins, size limits, the connection limit,
//! cross-transport delivery and shutdown. The client is tokio-tungstenite; MQTT packets come from
//! the `switchboard-mqtt` codec. Every wait is for an event, bounded by [`TIMEOUT`].

mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use switchboard::config::Config;
use switchboard_mqtt::{
    Bytes, BytesMut, Connect, Decoder, Packet, ProtocolVersion, PubAck, Publish, QoS, QosPid,
    ReasonCode, Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Gateway {
    http: SocketAddr,
    mqtt: SocketAddr,
    running: harness::Running,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Gateway {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let www = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        std::fs::write(www.path().join("index.html"), "<!doctype html>").unwrap();
        let mut config = harness::loopback(data.path());
        config.www = www.path().to_owned();
        configure(&mut config);
        let running = harness::Running::start(config, switchboard::RunOptions::default()).await;
        Self {
            http: running.bound.http[0],
            mqtt: running.bound.mqtt[0],
            running,
            _dirs: (www, data),
        }
    }

    /// A raw HTTP/1.1 WebSocket handshake with extra header lines; returns status, lower-cased
    /// head and body (up to the connection's end or the head alone for `101`).
    async fn handshake(&self, extra: &str) -> (u16, String, String) {
        self.handshake_to(&self.http.to_string(), extra).await
    }

    /// A handshake sent with `Host: host` (a browser sends the name it resolved).
    async fn handshake_to(&self, host: &str, extra: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(self.http).await.unwrap();
        let req = format!(
            "GET /mqtt HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
                .await
                .expect("response in time")
                .unwrap();
            raw.extend_from_slice(&chunk[..n]);
            let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                assert_ne!(n, 0, "connection closed before the response head");
                continue;
            };
            let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
            let status: u16 = head[9..12].parse().unwrap();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |l| l.trim().parse::<usize>().unwrap());
            if status == 101 || raw.len() >= split + 4 + length {
                let body = String::from_utf8_lossy(&raw[split + 4..]).into_owned();
                return (status, head, body);
            }
            assert_ne!(n, 0, "connection closed before the body");
        }
    }

    async fn ws(&self, protocols: &str) -> WsClient {
        self.ws_with(protocols, None)
            .await
            .expect("websocket handshake")
            .0
    }

    async fn ws_with(
        &self,
        protocols: &str,
        origin: Option<&str>,
    ) -> Result<(WsClient, String), tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{}/mqtt", self.http)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocols).unwrap(),
        );
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", HeaderValue::from_str(origin).unwrap());
        }
        let (ws, response) =
            tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .expect("handshake in time")?;
        let chosen = response
            .headers()
            .get("sec-websocket-protocol")
            .expect("a chosen subprotocol")
            .to_str()
            .unwrap()
            .to_owned();
        Ok((WsClient::new(ws), chosen))
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

/// An MQTT client over a WebSocket.
struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    decoder: Decoder,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl WsClient {
    fn new(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        let mut decoder = Decoder::new(u32::MAX);
        decoder.set_version(ProtocolVersion::V3_1_1);
        Self {
            ws,
            decoder,
            buf: BytesMut::new(),
            version: ProtocolVersion::V3_1_1,
        }
    }

    fn encode(&self, packets: &[Packet]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for packet in packets {
            packet.encode(self.version, &mut out).unwrap();
        }
        out.to_vec()
    }

    async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes.into())).await.unwrap();
    }

    async fn connect(&mut self, version: ProtocolVersion, client_id: &str) {
        self.version = version;
        self.decoder.set_version(version);
        let bytes = self.encode(&[Packet::Connect(Box::new(Connect::new(version, client_id)))]);
        self.send_bytes(bytes).await;
        match self.recv().await {
            Packet::ConnAck(ack) => assert_eq!(ack.code, ReasonCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The next WebSocket message that is not a packet fragment: a close frame, or `None` at the
    /// end of the stream.
    async fn next_message(&mut self) -> Option<Message> {
        tokio::time::timeout(TIMEOUT, self.ws.next())
            .await
            .expect("message within the timeout")
            .and_then(Result::ok)
    }

    /// The next MQTT packet; panics when the WebSocket closes first.
    async fn recv(&mut self) -> Packet {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).unwrap() {
                return packet;
            }
            match self.next_message().await {
                Some(Message::Binary(data)) => self.buf.extend_from_slice(&data),
                Some(Message::Ping(_) | Message::Pong(_)) => {}
                other => panic!("expected binary data, got {other:?}"),
            }
        }
    }

    /// Reads until the close frame; returns it.
    async fn close_frame(&mut self) -> Option<CloseFrame> {
        loop {
            match self.next_message().await {
                Some(Message::Close(frame)) => return frame,
                Some(_) => {}
                None => return None,
            }
        }
    }
}

fn subscribe(filter: &str, qos: QoS, pid: u16) -> Packet {
    Packet::Subscribe(Subscribe {
        pid: std::num::NonZeroU16::new(pid).unwrap(),
        filters: vec![(filter.into(), SubscriptionOptions::qos(qos))],
        properties: Default::default(),
    })
}

fn publish(topic: &str, payload: &'static str, qos_pid: QosPid) -> Packet {
    let mut p = Publish::new(topic.to_owned(), Bytes::from_static(payload.as_bytes()));
    p.qos_pid = qos_pid;
    Packet::Publish(p)
}

fn pid(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).unwrap()
}

#[tokio::test]
async fn every_accepted_subprotocol_is_echoed() {
    let gw = Gateway::start().await;
    for name in ["mqtt", "mqttv3.1", "mqttv3.1.1", "mqtt-v5", "mqttv5"] {
        let (_, chosen) = gw.ws_with(name, None).await.unwrap();
        assert_eq!(chosen, name);
    }
    let (_, chosen) = gw.ws_with("chat, mqttv3.1.1, mqtt", None).await.unwrap();
    assert_eq!(
        chosen, "mqtt",
        "mqtt is preferred wherever it is in the list"
    );
    gw.stop().await;
}

#[tokio::test]
async fn missing_or_unknown_subprotocol_is_400_with_a_reason() {
    let gw = Gateway::start().await;
    let (status, _, body) = gw.handshake("").await;
    assert_eq!(status, 400);
    assert!(body.contains("missing Sec-WebSocket-Protocol"), "{body}");
    let (status, _, body) = gw.handshake("Sec-WebSocket-Protocol: chat, wamp\r\n").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("unsupported Sec-WebSocket-Protocol"),
        "{body}"
    );
    let (status, head, _) = gw.handshake("Sec-WebSocket-Protocol: mqtt\r\n").await;
    assert_eq!(status, 101);
    assert!(head.contains("sec-websocket-protocol: mqtt"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "RFC 6455 sample key: {head}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn plain_get_on_the_websocket_path_asks_for_an_upgrade() {
    let gw = Gateway::start().await;
    let mut stream = TcpStream::connect(gw.http).await.unwrap();
    stream
        .write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert!(raw.starts_with("HTTP/1.1 426"), "{raw}");
    gw.stop().await;
}

#[tokio::test]
async fn a_packet_split_byte_by_byte_and_five_packets_in_one_frame() {
    let gw = Gateway::start().await;
    let mut client = gw.ws("mqtt").await;
    // CONNECT, one byte per binary message [MQTT-6.0.0-2].
    let connect = client.encode(&[Packet::Connect(Box::new(Connect::new(
        ProtocolVersion::V3_1_1,
        "bytewise",
    )))]);
    for byte in connect {
        client.send_bytes(vec![byte]).await;
    }
    match client.recv().await {
        Packet::ConnAck(ack) => assert_eq!(ack.code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // Five packets in one binary message.
    let five = client.encode(&[
        subscribe("ws/#", QoS::AtLeastOnce, 1),
        publish("ws/a", "zero", QosPid::AtMostOnce),
        publish("ws/b", "one", QosPid::AtLeastOnce(pid(2))),
        publish("ws/c", "two", QosPid::AtLeastOnce(pid(3))),
        Packet::PingReq,
    ]);
    client.send_bytes(five).await;
    let mut payloads = Vec::new();
    let mut acks = Vec::new();
    let mut pong = false;
    let mut suback = false;
    while payloads.len() < 3 || acks.len() < 2 || !pong || !suback {
        match client.recv().await {
            Packet::SubAck(ack) => {
                assert_eq!(ack.codes, [ReasonCode::GrantedQoS1]);
                suback = true;
            }
            Packet::PubAck(ack) => acks.push(ack.pid.get()),
            Packet::PingResp => pong = true,
            Packet::Publish(p) => {
                if let Some(id) = p.pid() {
                    let ack = client.encode(&[Packet::PubAck(PubAck::new(id))]);
                    client.send_bytes(ack).await;
                }
                payloads.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(payloads, ["zero", "one", "two"]);
    acks.sort_unstable();
    assert_eq!(acks, [2, 3]);
    gw.stop().await;
}

#[tokio::test]
async fn websocket_and_tcp_clients_exchange_messages() {
    let gw = Gateway::start().await;
    let mut ws = gw.ws("mqttv3.1.1").await;
    ws.connect(ProtocolVersion::V5, "ws-sub").await;
    ws.send_bytes(ws.encode(&[subscribe("cross/+", QoS::AtMostOnce, 1)]))
        .await;
    assert!(matches!(ws.recv().await, Packet::SubAck(_)));
    // A TCP publisher, raw bytes from the codec.
    let mut tcp = TcpStream::connect(gw.mqtt).await.unwrap();
    let mut out = BytesMut::new();
    Packet::Connect(Box::new(Connect::new(ProtocolVersion::V3_1_1, "tcp-pub")))
        .encode(ProtocolVersion::V3_1_1, &mut out)
        .unwrap();
    publish("cross/t", "over tcp", QosPid::AtMostOnce)
        .encode(ProtocolVersion::V3_1_1, &mut out)
        .unwrap();
    tcp.write_all(&out).await.unwrap();
    match ws.recv().await {
        Packet::Publish(p) => {
            assert_eq!(&*p.topic, "cross/t");
            assert_eq!(&p.payload[..], b"over tcp");
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_text_frame_closes_with_protocol_error() {
    let gw = Gateway::start().await;
    let mut client = gw.ws("mqtt").await;
    client.connect(ProtocolVersion::V3_1_1, "texter").await;
    client
        .ws
        .send(Message::text("PUBLISH please"))
        .await
        .unwrap();
    let frame = client
        .close_frame()
        .await
        .expect("a close frame with a code");
    assert_eq!(frame.code, CloseCode::Protocol);
    gw.stop().await;
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let gw = Gateway::start().await;
    let mut client = gw.ws("mqtt").await;
    client.connect(ProtocolVersion::V3_1_1, "pinger").await;
    client
        .ws
        .send(Message::Ping(Bytes::from_static(b"hi")))
        .await
        .unwrap();
    assert_eq!(
        client.next_message().await,
        Some(Message::Pong(Bytes::from_static(b"hi")))
    );
    gw.stop().await;
}

#[tokio::test]
async fn foreign_origins_are_refused_and_own_and_listed_ones_allowed() {
    let gw = Gateway::start_with(|config| {
        config.http.allowed_origins = vec!["https://plugs.example.com".to_owned()];
    })
    .await;
    let (status, _, body) = gw
        .handshake("Sec-WebSocket-Protocol: mqtt\r\nOrigin: https://evil.example\r\n")
        .await;
    assert_eq!(status, 403);
    assert!(body.contains("origin not allowed"), "{body}");
    let own = format!("http://{}", gw.http);
    for origin in [
        own.as_str(),
        "http://localhost:8080",
        "https://plugs.example.com",
    ] {
        let (status, _, _) = gw
            .handshake(&format!(
                "Sec-WebSocket-Protocol: mqtt\r\nOrigin: {origin}\r\n"
            ))
            .await;
        assert_eq!(status, 101, "{origin}");
    }
    gw.stop().await;
}

/// A DNS-rebinding page: `evil.example` made to resolve to the gateway, so the browser sends
/// `Host: evil.example:PORT` and `Origin: http://evil.example:PORT`, same-origin with itself.
/// From loopback, an accepted handshake would be an anonymous session. Names in
/// `[http] allowed_hosts` are the gateway's own and pass.
#[tokio::test]
async fn a_dns_rebinding_page_is_not_the_gateways_own_origin() {
    let gw = Gateway::start_with(|config| {
        config.http.allowed_hosts = vec!["switchboard.home.arpa".to_owned()];
    })
    .await;
    let port = gw.http.port();
    for name in ["evil.example", "evil.example."] {
        let host = format!("{name}:{port}");
        let (status, _, body) = gw
            .handshake_to(
                &host,
                &format!("Sec-WebSocket-Protocol: mqtt\r\nOrigin: http://{host}\r\n"),
            )
            .await;
        assert_eq!(status, 403, "{host}");
        assert!(body.contains("origin not allowed"), "{body}");
    }
    // A host that no URL can hold is refused too (the origin fuzz target's find).
    let (status, _, _) = gw
        .handshake_to(
            &format!("localhost:{port}"),
            "Sec-WebSocket-Protocol: mqtt\r\nOrigin: https://D#ASH.e.localhost\r\n",
        )
        .await;
    assert_eq!(status, 403);
    let own = format!("switchboard.home.arpa:{port}");
    let (status, _, _) = gw
        .handshake_to(
            &own,
            &format!("Sec-WebSocket-Protocol: mqtt\r\nOrigin: http://{own}\r\n"),
        )
        .await;
    assert_eq!(status, 101);
    gw.stop().await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let gw = Gateway::start_with(|config| {
        config.http.max_message_size = 1024;
        config.http.max_frame_size = 1024;
    })
    .await;
    let mut client = gw.ws("mqtt").await;
    client.connect(ProtocolVersion::V3_1_1, "big").await;
    // Just under the limit passes.
    let mut p = Publish::new("big/ok", vec![b'x'; 900]);
    p.qos_pid = QosPid::AtMostOnce;
    client
        .send_bytes(client.encode(&[Packet::Publish(p), Packet::PingReq]))
        .await;
    assert_eq!(client.recv().await, Packet::PingResp);
    client.send_bytes(vec![0u8; 2048]).await;
    let frame = client.close_frame().await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Size);
    gw.stop().await;
}

#[tokio::test]
async fn connection_limit_answers_503() {
    let gw = Gateway::start_with(|config| config.broker.max_connections = 1).await;
    let mut first = gw.ws("mqtt").await;
    first.connect(ProtocolVersion::V3_1_1, "only").await;
    let (status, _, body) = gw.handshake("Sec-WebSocket-Protocol: mqtt\r\n").await;
    assert_eq!(status, 503);
    assert!(body.contains("limit"), "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_reaches_websocket_connections() {
    let gw = Gateway::start().await;
    let mut client = gw.ws("mqtt").await;
    client.connect(ProtocolVersion::V5, "stays").await;
    gw.running.shutdown.cancel();
    match client.recv().await {
        Packet::Disconnect(d) => assert_eq!(d.code, ReasonCode::ServerShuttingDown),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    let _ = client.close_frame().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let gw = Gateway::start_with(|config| config.http.handshake_timeout = 1).await;
    let mut stream = TcpStream::connect(gw.http).await.unwrap();
    // Half a request line, then nothing: the server must give up on its own.
    stream.write_all(b"GET /mqtt HT").await.unwrap();
    let mut rest = Vec::new();
    // EOF or a reset both mean closed; what matters is that it happens without our help.
    let _closed = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut rest))
        .await
        .expect("the server closed the connection before the test timeout");
    assert!(!rest.starts_with(b"HTTP/1.1 101"));
    gw.stop().await;
}

#[tokio::test]
async fn a_permessage_deflate_offer_is_declined_not_refused() {
    // tungstenite 0.30 has no permessage-deflate: the offer is ignored and the connection runs
    // uncompressed, as RFC 6455 section 9.1 allows.
    let gw = Gateway::start().await;
    let (status, head, _) = gw
        .handshake(
            "Sec-WebSocket-Protocol: mqtt\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        )
        .await;
    assert_eq!(status, 101);
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    gw.stop().await;
}
