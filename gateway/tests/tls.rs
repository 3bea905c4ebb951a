//! MQTT over TLS, HTTPS and WSS, client certificates and certificate reload, over real sockets
//! with certificates from `switchboard::cert`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use switchboard::config::Config;
use switchboard::tls::TlsConfig;
use switchboard_mqtt::{
    BytesMut, ConnAck, Connect, Decoder, Packet, ProtocolVersion, PubAck, Publish, QoS, QosPid,
    ReasonCode, SubAck, Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, RootCertStore, pki_types::ServerName};
use tokio_util::sync::CancellationToken;

use common::{TIMEOUT, V3_1_1, V5, harness, pid};

struct Gateway {
    mqtts: SocketAddr,
    http: SocketAddr,
    running: harness::Running,
}

impl Gateway {
    async fn start(dir: &Path, tls: TlsConfig, acl: Option<&str>) -> Self {
        let mut config = harness::loopback(&dir.join("data"));
        config.listeners.mqtt = Vec::new();
        config.listeners.mqtts = Some(vec!["127.0.0.1:0".parse().unwrap()]);
        config.tls = Some(tls);
        if let Some(acl) = acl {
            let path = dir.join("acl");
            std::fs::write(&path, acl).unwrap();
            config.security.acl_file = Some(path);
        }
        let running = harness::Running::start(config, switchboard::RunOptions::default()).await;
        Self {
            mqtts: running.bound.mqtts[0],
            http: running.bound.http[0],
            running,
        }
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

/// Certificates in a temp dir: CA, server certificate, and a client certificate `plug-7`.
fn certs() -> (tempfile::TempDir, TlsConfig) {
    let dir = tempfile::tempdir().unwrap();
    let generated = switchboard::cert::generate(dir.path(), &[], &[], false).unwrap();
    switchboard::cert::issue_client(dir.path(), "plug-7").unwrap();
    let tls = TlsConfig {
        cert: generated.server,
        key: generated.server_key,
        client_ca: None,
        client_cert_required: false,
    };
    (dir, tls)
}

fn connector(dir: &Path, client_cert: Option<&str>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some(cn) => {
            let pem = std::fs::read(dir.join(format!("client-{cn}.pem"))).unwrap();
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let pem = std::fs::read(dir.join(format!("client-{cn}-key.pem"))).unwrap();
            let key = rustls_pemfile::private_key(&mut pem.as_slice())
                .unwrap()
                .unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    };
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    dir: &Path,
    addr: SocketAddr,
    client_cert: Option<&str>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(TIMEOUT, connector(dir, client_cert).connect(name, tcp))
        .await
        .expect("handshake in time")
}

/// A raw MQTT client over any byte stream.
struct Mqtt<S> {
    stream: S,
    decoder: Decoder,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Mqtt<S> {
    fn new(stream: S) -> Self {
        Self::with_version(stream, V5)
    }

    fn with_version(stream: S, version: ProtocolVersion) -> Self {
        let mut decoder = Decoder::new(u32::MAX);
        decoder.set_version(version);
        Self {
            stream,
            decoder,
            buf: BytesMut::new(),
            version,
        }
    }

    async fn send(&mut self, packet: Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).unwrap();
        self.stream.write_all(&out).await?;
        self.stream.flush().await
    }

    /// The next packet; `None` at end of stream or on a (TLS) error.
    async fn next(&mut self) -> Option<Packet> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                // Garbage (a TLS alert read as MQTT) counts as the end.
                match self.decoder.decode(&mut self.buf) {
                    Ok(Some(p)) => return Some(p),
                    Ok(None) => {}
                    Err(_) => return None,
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("packet or close in time")
    }

    async fn connect(&mut self, client_id: &str) -> std::io::Result<Option<ConnAck>> {
        self.send(Packet::Connect(Box::new(Connect::new(
            self.version,
            client_id,
        ))))
        .await?;
        Ok(match self.next().await {
            Some(Packet::ConnAck(ack)) => Some(ack),
            None => None,
            Some(other) => panic!("expected CONNACK, got {other:?}"),
        })
    }

    async fn subscribe(&mut self, filter: &str) -> SubAck {
        self.send(Packet::Subscribe(Subscribe {
            pid: pid(1),
            filters: vec![(filter.into(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
            properties: Default::default(),
        }))
        .await
        .unwrap();
        match self.next().await {
            Some(Packet::SubAck(ack)) => ack,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

fn x509_serial(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial_as_string()
}

#[tokio::test]
async fn mqtt_over_tls_connect_and_qos1_round_trip() {
    let (dir, tls) = certs();
    let gw = Gateway::start(dir.path(), tls, None).await;
    let stream = tls_connect(dir.path(), gw.mqtts, None).await.unwrap();
    let mut client = Mqtt::new(stream);
    let ack = client.connect("tls-client").await.unwrap().unwrap();
    assert_eq!(ack.code, ReasonCode::Success);
    let suback = client.subscribe("tls/t").await;
    assert_eq!(suback.codes, vec![ReasonCode::GrantedQoS1]);
    let mut publish = Publish::new("tls/t", "over tls");
    publish.qos_pid = QosPid::AtLeastOnce(pid(2));
    client.send(Packet::Publish(publish)).await.unwrap();
    let mut got_ack = false;
    let mut got_msg = false;
    while !(got_ack && got_msg) {
        match client.next().await.expect("packet") {
            Packet::PubAck(ack) => {
                assert_eq!(ack.pid, pid(2));
                got_ack = true;
            }
            Packet::Publish(p) => {
                assert_eq!(&p.payload[..], b"over tls");
                if let QosPid::AtLeastOnce(id) = p.qos_pid {
                    client.send(Packet::PubAck(PubAck::new(id))).await.unwrap();
                }
                got_msg = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // A plain-text client on the TLS port gets nothing useful.
    let mut plain = Mqtt::new(TcpStream::connect(gw.mqtts).await.unwrap());
    let ack = plain.connect("plain").await.unwrap_or(None);
    assert!(ack.is_none(), "{ack:?}");
    gw.stop().await;
}

#[tokio::test]
async fn mosquitto_clients_over_tls() {
    let (pub_bin, sub_bin) = ("/usr/bin/mosquitto_pub", "/usr/bin/mosquitto_sub");
    assert!(
        Path::new(pub_bin).exists() && Path::new(sub_bin).exists(),
        "mosquitto-clients are missing: run `cargo xtask setup`"
    );
    let (dir, tls) = certs();
    let gw = Gateway::start(dir.path(), tls, None).await;
    let ca = dir.path().join("ca.pem");
    let port = gw.mqtts.port().to_string();
    // Retained, so the subscriber started afterwards receives it without any race.
    let status = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new(pub_bin)
            .args(["-h", "localhost", "-p", &port, "-V", "mqttv5", "--cafile"])
            .arg(&ca)
            .args([
                "-t",
                "tls/mosquitto",
                "-m",
                "via mosquitto",
                "-r",
                "-q",
                "1",
            ])
            .status(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(status.success(), "mosquitto_pub over TLS failed");
    let out = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new(sub_bin)
            .args(["-h", "localhost", "-p", &port, "--cafile"])
            .arg(&ca)
            .args(["-t", "tls/mosquitto", "-C", "1", "-W", "5"])
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "via mosquitto");

    // Without the CA the server certificate is refused.
    let out = tokio::process::Command::new(pub_bin)
        .args(["-h", "localhost", "-p", &port, "--capath", "/nonexistent"])
        .args(["-t", "x", "-m", "y"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    gw.stop().await;
}

#[tokio::test]
async fn https_healthz_and_wss_mqtt() {
    let (dir, tls) = certs();
    let gw = Gateway::start(dir.path(), tls, None).await;

    let mut stream = tls_connect(dir.path(), gw.http, None).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // Plain HTTP on the same port is not served.
    let mut plain = TcpStream::connect(gw.http).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let stream = tls_connect(dir.path(), gw.http, None).await.unwrap();
    let mut request = format!("wss://localhost:{}/mqtt", gw.http.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, response) =
        tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, stream))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(response.status(), 101);
    let mut out = BytesMut::new();
    Packet::Connect(Box::new(Connect::new(V5, "wss-client")))
        .encode(V5, &mut out)
        .unwrap();
    ws.send(Message::binary(out.freeze())).await.unwrap();
    let msg = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut buf = BytesMut::from(&msg.into_data()[..]);
    let mut decoder = Decoder::new(u32::MAX);
    decoder.set_version(ProtocolVersion::V5);
    match decoder.decode(&mut buf).unwrap() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    gw.stop().await;
}

/// Opens MQTT over WSS at `/mqtt` and exchanges whole packets as binary messages.
async fn wss_packets(
    dir: &Path,
    addr: SocketAddr,
    client_cert: Option<&str>,
    packets: Vec<Packet>,
) -> Vec<Packet> {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let stream = tls_connect(dir, addr, client_cert).await.unwrap();
    let mut request = format!("wss://localhost:{}/mqtt", addr.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, response) =
        tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, stream))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(response.status(), 101);
    let mut decoder = Decoder::new(u32::MAX);
    decoder.set_version(V5);
    let mut buf = BytesMut::new();
    let mut replies = Vec::new();
    for packet in packets {
        let mut out = BytesMut::new();
        packet.encode(V5, &mut out).unwrap();
        ws.send(Message::binary(out.freeze())).await.unwrap();
        let reply = loop {
            if let Some(p) = decoder.decode(&mut buf).unwrap() {
                break p;
            }
            let msg = tokio::time::timeout(TIMEOUT, ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            buf.extend_from_slice(&msg.into_data());
        };
        replies.push(reply);
    }
    replies
}

/// The ACL grants `users/<user name>/#`: only a client whose user name is the certificate's
/// common name may subscribe below `users/plug-7/`.
const ACL: &str = "pattern readwrite users/%u/#\n";

#[tokio::test]
async fn client_certificate_common_name_becomes_the_user_name() {
    let (dir, mut tls) = certs();
    tls.client_ca = Some(dir.path().join("ca.pem"));
    let gw = Gateway::start(dir.path(), tls, Some(ACL)).await;

    let stream = tls_connect(dir.path(), gw.mqtts, Some("plug-7"))
        .await
        .unwrap();
    let mut with_cert = Mqtt::new(stream);
    let ack = with_cert.connect("device").await.unwrap().unwrap();
    assert_eq!(ack.code, ReasonCode::Success, "{ack:?}");
    assert_eq!(
        with_cert.subscribe("users/plug-7/#").await.codes,
        vec![ReasonCode::GrantedQoS1]
    );
    assert_eq!(
        with_cert.subscribe("users/plug-8/#").await.codes,
        vec![ReasonCode::NotAuthorized]
    );

    // The same over WSS on the HTTPS listener.
    let subscribe = |filter: &str| {
        Packet::Subscribe(Subscribe {
            pid: pid(1),
            filters: vec![(filter.into(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
            properties: Default::default(),
        })
    };
    let replies = wss_packets(
        dir.path(),
        gw.http,
        Some("plug-7"),
        vec![
            Packet::Connect(Box::new(Connect::new(V5, "wss-device"))),
            subscribe("users/plug-7/#"),
            subscribe("users/plug-8/#"),
        ],
    )
    .await;
    let codes: Vec<_> = replies
        .iter()
        .map(|p| match p {
            Packet::ConnAck(ack) => ack.code,
            Packet::SubAck(ack) => ack.codes[0],
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::NotAuthorized
        ]
    );

    // No certificate (allowed: not required): anonymous, so the pattern does not apply.
    let stream = tls_connect(dir.path(), gw.mqtts, None).await.unwrap();
    let mut without = Mqtt::new(stream);
    let ack = without.connect("anon").await.unwrap().unwrap();
    assert_eq!(ack.code, ReasonCode::Success, "{ack:?}");
    assert_eq!(
        without.subscribe("users/plug-7/#").await.codes,
        vec![ReasonCode::NotAuthorized]
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_when_one_is_required() {
    let (dir, mut tls) = certs();
    tls.client_ca = Some(dir.path().join("ca.pem"));
    tls.client_cert_required = true;
    let gw = Gateway::start(dir.path(), tls, None).await;

    // TLS 1.3: the client may finish its side of the handshake before the server's alert
    // arrives; either way no CONNACK comes back.
    let refused = match tls_connect(dir.path(), gw.mqtts, None).await {
        Err(_) => true,
        Ok(stream) => {
            let mut client = Mqtt::new(stream);
            matches!(client.connect("no-cert").await, Err(_) | Ok(None))
        }
    };
    assert!(refused);

    let stream = tls_connect(dir.path(), gw.mqtts, Some("plug-7"))
        .await
        .unwrap();
    let mut client = Mqtt::with_version(stream, V3_1_1);
    let ack = client.connect("with-cert").await.unwrap().unwrap();
    assert_eq!(ack.code, ReasonCode::Success);
    gw.stop().await;
}

#[tokio::test]
async fn mosquitto_with_a_client_certificate() {
    let sub_bin = "/usr/bin/mosquitto_sub";
    let pub_bin = "/usr/bin/mosquitto_pub";
    assert!(
        Path::new(pub_bin).exists() && Path::new(sub_bin).exists(),
        "mosquitto-clients are missing: run `cargo xtask setup`"
    );
    let (dir, mut tls) = certs();
    tls.client_ca = Some(dir.path().join("ca.pem"));
    tls.client_cert_required = true;
    let gw = Gateway::start(dir.path(), tls, Some(ACL)).await;
    let d = dir.path();
    let port = gw.mqtts.port().to_string();
    let tls_args = |cmd: &mut tokio::process::Command| {
        cmd.args(["-h", "localhost", "-p", &port, "-V", "mqttv5", "--cafile"])
            .arg(d.join("ca.pem"))
            .arg("--cert")
            .arg(d.join("client-plug-7.pem"))
            .arg("--key")
            .arg(d.join("client-plug-7-key.pem"));
    };
    let mut publish = tokio::process::Command::new(pub_bin);
    tls_args(&mut publish);
    publish.args(["-t", "users/plug-7/state", "-m", "on", "-r", "-q", "1"]);
    let status = tokio::time::timeout(TIMEOUT, publish.status())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let mut subscribe = tokio::process::Command::new(sub_bin);
    tls_args(&mut subscribe);
    subscribe.args(["-t", "users/plug-7/state", "-C", "1", "-W", "5"]);
    let out = tokio::time::timeout(TIMEOUT, subscribe.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "on");
    gw.stop().await;
}

async fn server_serial(dir: &Path, addr: SocketAddr) -> String {
    let stream = tls_connect(dir, addr, None).await.unwrap();
    let certs = stream.get_ref().1.peer_certificates().unwrap();
    x509_serial(certs[0].as_ref())
}

#[tokio::test]
async fn reload_picks_up_a_new_certificate() {
    let (dir, tls) = certs();
    let tls_config = tls.clone();
    let gw = Gateway::start(dir.path(), tls, None).await;
    let before = server_serial(dir.path(), gw.mqtts).await;

    // In-process API: the same files reloaded on demand.
    let direct = switchboard::tls::Tls::load(&tls_config).unwrap();
    let generated = switchboard::cert::generate(dir.path(), &[], &[], false).unwrap();
    direct.reload().unwrap();
    assert!(generated.reused_ca);

    // SIGHUP to this process: the running gateway reloads too. Reloading is asynchronous, so
    // new connections are tried until one shows the new serial (bounded).
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP).unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let after = loop {
        let serial = server_serial(dir.path(), gw.mqtts).await;
        if serial != before {
            break serial;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "certificate not reloaded"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(
        after.replace(':', "").to_lowercase(),
        generated.serial.trim_start_matches("00").to_lowercase()
    );
    // HTTPS uses the new certificate as well.
    assert_eq!(server_serial(dir.path(), gw.http).await, after);
    gw.stop().await;
}

#[tokio::test]
async fn mqtts_without_tls_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.listeners.mqtt = Vec::new();
    config.listeners.http = Vec::new();
    config.listeners.mqtts = Some(vec!["127.0.0.1:0".parse().unwrap()]);
    let err = switchboard::run(config, CancellationToken::new(), |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("[tls]"), "{err}");
}
