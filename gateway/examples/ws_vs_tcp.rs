//! MQTT over WebSocket throughput as a fraction of MQTT over TCP, same scenario on both.
//!
//! One in-process gateway on loopback; one subscriber (`bench/#`, QoS 0) and one publisher,
//! both on the transport under test. The publisher sends `N` QoS 0 PUBLISH packets with a 64 B
//! payload, written in 64 KiB chunks (one flush, so one WebSocket message, per chunk), then a QoS
//! 1 end marker; the time runs from the first write to the subscriber decoding the marker. The
//! WebSocket clients are tokio-tungstenite wrapped in the gateway's own [`WsByteStream`], so
//! both scenarios run the same client code over a byte stream. Prints the figures; asserts
//! nothing about time.
//!
//! ```text
//! cargo run --release -p switchboard --example ws_vs_tcp [N]
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchboard::config::Config;
use switchboard::ws::WsByteStream;
use switchboard_mqtt::{
    BytesMut, Connect, Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, QosPid, Subscribe,
    SubscriptionOptions,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;

const PAYLOAD: usize = 64;
const CHUNK: usize = 64 << 10;
const ROUNDS: usize = 3;
const V: ProtocolVersion = ProtocolVersion::V3_1_1;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(n))
}

async fn bench(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.listeners.mqtt = vec!["127.0.0.1:0".parse()?];
    config.listeners.http = vec!["127.0.0.1:0".parse()?];
    config.data_dir = dir.path().to_owned();
    config.www = dir.path().to_owned();
    config.broker.sys_interval = 0;
    // Room for the whole burst, so QoS 0 messages are not dropped while the subscriber catches up.
    config.broker.max_queued_messages = n + 16;
    config.broker.max_queued_bytes = (n + 16) * (PAYLOAD + 64);
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let gateway = tokio::spawn(switchboard::run(config, shutdown.clone(), move |bound| {
        let _ = tx.send((bound.mqtt[0], bound.http[0]));
    }));
    let (mqtt, http) = rx.await?;

    let burst = encode_burst(n);
    println!(
        "{n} PUBLISH QoS 0, {PAYLOAD} B payload, 1 publisher -> 1 subscriber, loopback, best of {ROUNDS}"
    );
    let mut best = [Duration::MAX; 2];
    for round in 0..ROUNDS {
        let tcp = run_pair(tcp(mqtt).await?, tcp(mqtt).await?, &burst, n, round).await?;
        let ws = run_pair(ws(http).await?, ws(http).await?, &burst, n, round).await?;
        best[0] = best[0].min(tcp);
        best[1] = best[1].min(ws);
    }
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("TCP:       {:>10.0} msg/s  ({:?})", rate(best[0]), best[0]);
    println!("WebSocket: {:>10.0} msg/s  ({:?})", rate(best[1]), best[1]);
    println!("WebSocket / TCP = {:.2}", rate(best[1]) / rate(best[0]));
    shutdown.cancel();
    gateway.await??;
    Ok(())
}

async fn tcp(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn ws(
    addr: SocketAddr,
) -> anyhow::Result<WsByteStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>> {
    let mut request = format!("ws://{addr}/mqtt").into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(WsByteStream::new(ws))
}

fn encode_burst(n: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    let payload = vec![b'p'; PAYLOAD];
    for i in 0..n {
        let publish = Publish::new(format!("bench/{}", i % 16), payload.clone());
        Packet::Publish(publish)
            .encode(V, &mut out)
            .expect("encode");
    }
    out.to_vec()
}

fn encode(packet: Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.encode(V, &mut out).expect("encode");
    out.to_vec()
}

/// Reads until a packet decodes.
async fn recv<S: AsyncRead + Unpin>(
    stream: &mut S,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
) -> anyhow::Result<Packet> {
    loop {
        if let Some(packet) = decoder.decode(buf)? {
            return Ok(packet);
        }
        buf.reserve(64 << 10);
        if stream.read_buf(buf).await? == 0 {
            anyhow::bail!("connection closed");
        }
    }
}

async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    id: &str,
) -> anyhow::Result<(Decoder, BytesMut)> {
    let mut decoder = Decoder::new(u32::MAX);
    decoder.set_version(V);
    let mut buf = BytesMut::new();
    stream
        .write_all(&encode(Packet::Connect(Box::new(Connect::new(V, id)))))
        .await?;
    stream.flush().await?;
    match recv(stream, &mut decoder, &mut buf).await? {
        Packet::ConnAck(_) => Ok((decoder, buf)),
        other => anyhow::bail!("expected CONNACK, got {other:?}"),
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

/// Runs one burst; returns the time from the first write to the subscriber seeing the marker.
async fn run_pair<S>(
    mut sub: S,
    mut publisher: S,
    burst: &[u8],
    n: usize,
    round: usize,
) -> anyhow::Result<Duration>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut decoder, mut buf) = connect(&mut sub, &format!("bench-sub-{round}")).await?;
    sub.write_all(&encode(Packet::Subscribe(Subscribe {
        pid: pid(1),
        filters: vec![("bench/#".into(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
        properties: Default::default(),
    })))
    .await?;
    sub.flush().await?;
    match recv(&mut sub, &mut decoder, &mut buf).await? {
        Packet::SubAck(_) => {}
        other => anyhow::bail!("expected SUBACK, got {other:?}"),
    }
    let counter = tokio::spawn(async move {
        let mut received = 0usize;
        loop {
            match recv(&mut sub, &mut decoder, &mut buf).await? {
                Packet::Publish(p) if &*p.topic == "bench/end" => {
                    return anyhow::Ok((received, Instant::now()));
                }
                Packet::Publish(_) => received += 1,
                _ => {}
            }
        }
    });
    let (mut pub_decoder, mut pub_buf) =
        connect(&mut publisher, &format!("bench-pub-{round}")).await?;
    let start = Instant::now();
    for chunk in burst.chunks(CHUNK) {
        publisher.write_all(chunk).await?;
        publisher.flush().await?;
    }
    let mut end = Publish::new("bench/end", b"end".to_vec());
    end.qos_pid = QosPid::AtLeastOnce(pid(1));
    publisher.write_all(&encode(Packet::Publish(end))).await?;
    publisher.flush().await?;
    let (received, done) = counter.await??;
    let elapsed = done - start;
    if received != n {
        println!("  warning: the subscriber got {received} of {n} messages");
    }
    // Wait for the PUBACK so the publisher's session ends cleanly.
    let _ = recv(&mut publisher, &mut pub_decoder, &mut pub_buf).await?;
    Ok(elapsed)
}
