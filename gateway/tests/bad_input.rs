//! Bad input over TCP and WebSocket: random bytes, truncated packets, lengths beyond the
//! maximum, invalid UTF-8, invalid or control-character filters and topics, reserved flags, two CONNECTs, PUBLISH before CONNECT, a slow-loris
//! CONNECT and a connection flood from one address. Each offender must be cut off (the gateway
//! closes its connection within a bound) while a well-behaved client on the side keeps
//! round-tripping QoS 1 messages with bounded latency for the whole suite.

mod sec_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sec_support::{Gateway, Mq, TIMEOUT, V3_1_1, V5, assert_cut_off, connect_packet, tcp};
use switchboard_mqtt::{BytesMut, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Longest round trip the side client may see while the offenders run (debug build, shared
/// CPUs).
const SIDE_MAX_LATENCY: Duration = Duration::from_secs(2);

fn encode(packet: Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.encode(version, &mut out).unwrap();
    out.to_vec()
}

fn connect_bytes(id: &str) -> Vec<u8> {
    encode(
        Packet::Connect(Box::new(connect_packet(V3_1_1, id, None, None))),
        V3_1_1,
    )
}

/// A deterministic byte generator (xorshift), so a failure can be replayed.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The offending inputs, by name.
fn offenders() -> Vec<(&'static str, Vec<u8>)> {
    let mut list = Vec::new();
    for seed in 1..=4 {
        list.push(("random bytes", random_bytes(seed, 700)));
    }
    let connect = connect_bytes("truncated-client");
    list.push(("truncated CONNECT", connect[..connect.len() / 2].to_vec()));
    // Remaining Length 268,435,455: far beyond max_packet_size.
    list.push((
        "length beyond the maximum",
        vec![0x10, 0xff, 0xff, 0xff, 0x7f],
    ));
    // A fifth length byte: malformed variable byte integer.
    list.push(("malformed length", vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x01]));
    // 5,000 bytes announced with a 4,096 byte limit.
    list.push(("packet larger than max_packet_size", vec![0x10, 0x88, 0x27]));
    // CONNECT whose client id is invalid UTF-8 (0xC3 0x28).
    list.push((
        "invalid UTF-8",
        vec![
            0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, 0xc3, 0x28,
        ],
    ));
    // CONNECT with the reserved connect flag set ([MQTT-3.1.2-3]).
    let mut reserved = connect_bytes("reserved");
    reserved[9] |= 0x01;
    list.push(("reserved CONNECT flag", reserved));
    // CONNECT with fixed header flags 0x1 instead of 0x0.
    let mut flags = connect_bytes("flags");
    flags[0] |= 0x01;
    list.push(("reserved fixed header flags", flags));
    // A valid CONNECT then SUBSCRIBE with flags 0x0 instead of 0x2 ([MQTT-3.8.1-1]).
    let mut sub = connect_bytes("bad-subscribe");
    sub.extend_from_slice(&[0x80, 6, 0, 1, 0, 1, b'a', 0]);
    list.push(("reserved SUBSCRIBE flags", sub));
    // Two CONNECTs ([MQTT-3.1.0-2]).
    let mut twice = connect_bytes("twice");
    twice.extend_from_slice(&connect_bytes("twice"));
    list.push(("two CONNECTs", twice));
    // PUBLISH before CONNECT ([MQTT-3.1.0-1]).
    list.push((
        "PUBLISH before CONNECT",
        encode(
            Packet::Publish(switchboard_mqtt::Publish::new("a", b"x".to_vec())),
            V3_1_1,
        ),
    ));
    // Invalid UTF-8 in a PUBLISH topic after a valid CONNECT.
    let mut topic = connect_bytes("bad-topic");
    topic.extend_from_slice(&[0x30, 5, 0, 2, 0xff, 0xfe, b'x']);
    list.push(("invalid UTF-8 topic", topic));
    // UNSUBSCRIBE of an invalid filter: a malformed packet, not an UNSUBACK ([MQTT-4.7.3]).
    let mut unsub = connect_bytes("bad-unsubscribe");
    unsub.extend_from_slice(&[0xa2, 10, 0, 1, 0, 6, b'f', b'u', b'z', b'z', b'Z', b'#']);
    list.push(("UNSUBSCRIBE of an invalid filter", unsub));
    // A control character (U+0007) in a PUBLISH topic and in an UNSUBSCRIBE filter.
    let mut bell = connect_bytes("control-topic");
    bell.extend_from_slice(&[0x30, 6, 0, 3, b'a', 0x07, b'b', b'x']);
    list.push(("control character in a topic", bell));
    let mut bell = connect_bytes("control-filter");
    bell.extend_from_slice(&[0xa2, 7, 0, 1, 0, 3, b'a', 0x07, b'b']);
    list.push(("control character in an UNSUBSCRIBE filter", bell));
    list
}

/// Sends `bytes` (write errors are fine: the gateway may already have closed) and asserts the
/// gateway closes the connection.
async fn offend<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, bytes: &[u8], what: &str) {
    let _ = io.write_all(bytes).await;
    let _ = io.flush().await;
    assert_cut_off(&mut io, what).await;
}

/// One byte of a CONNECT every 200 ms: cut off by the CONNECT deadline before it completes.
async fn slow_loris<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, what: &str) -> Duration {
    let started = Instant::now();
    let bytes = connect_bytes("slow-loris-client-with-a-long-identifier");
    let mut buf = [0u8; 64];
    for byte in bytes {
        if io.write_all(&[byte]).await.is_err() || io.flush().await.is_err() {
            return started.elapsed();
        }
        tokio::select! {
            read = io.read(&mut buf) => {
                assert!(matches!(read, Ok(0) | Err(_)), "{what}: unexpected reply {read:?}");
                return started.elapsed();
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    panic!("{what}: the whole CONNECT went through one byte at a time");
}

/// The well-behaved client: QoS 1 round trips through the broker until `stop`; returns how
/// many and the slowest.
async fn side_client(gw: std::net::SocketAddr, stop: Arc<AtomicBool>) -> (usize, Duration) {
    let mut c = tcp(gw, V5).await;
    assert_eq!(
        c.connect(connect_packet(V5, "side", None, None)).await.code,
        ReasonCode::Success
    );
    assert_eq!(
        c.subscribe("side/echo", QoS::AtLeastOnce).await,
        ReasonCode::GrantedQoS1
    );
    let mut n = 0;
    let mut slowest = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let payload = n.to_string();
        let (code, seen) = c
            .publish("side/echo", &payload, QoS::AtLeastOnce, false)
            .await;
        assert_eq!(code, Some(ReasonCode::Success));
        if !seen.iter().any(|p| p.payload == payload.as_bytes()) {
            let p = c.recv_publish().await;
            assert_eq!(p.payload, payload.as_bytes());
        }
        slowest = slowest.max(started.elapsed());
        n += 1;
    }
    (n, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offenders_are_cut_off_and_others_keep_service() {
    let gw = Gateway::start(|c| {
        c.broker.connect_timeout = 2;
        c.broker.max_packet_size = 4096;
        c.limits.max_connections_per_address = 40;
        c.limits.login_backoff_ms = 1;
        c.limits.login_backoff_max_ms = 2;
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let side = tokio::spawn(side_client(gw.mqtt, Arc::clone(&stop)));

    for (what, bytes) in offenders() {
        let io = tcp(gw.mqtt, V3_1_1).await.io;
        offend(io, &bytes, &format!("tcp: {what}")).await;
        let ws = gw.ws("", &[]).await.expect("websocket");
        offend(ws, &bytes, &format!("websocket: {what}")).await;
    }

    // Slow-loris on both transports at once: cut off by the 2 s CONNECT deadline.
    let tcp_loris = slow_loris(tcp(gw.mqtt, V3_1_1).await.io, "tcp slow-loris");
    let ws_loris = slow_loris(gw.ws("", &[]).await.unwrap(), "websocket slow-loris");
    let (a, b) = tokio::join!(tcp_loris, ws_loris);
    for took in [a, b] {
        assert!(took < Duration::from_secs(4), "slow-loris lasted {took:?}");
    }

    // A flood from one address: 60 TCP and 20 WebSocket connections, each sending CONNECT.
    // Beyond the per-address limit they are closed without CONNACK; those admitted are served.
    let mut flood = Vec::new();
    for i in 0..60 {
        let addr = gw.mqtt;
        flood.push(tokio::spawn(async move {
            let mut c = tcp(addr, V3_1_1).await;
            let ok = c
                .try_connect(connect_packet(V3_1_1, &format!("flood{i}"), None, None))
                .await;
            (ok, c)
        }));
    }
    let mut ws_flood = Vec::new();
    for i in 0..20 {
        let http = gw.http;
        ws_flood.push(tokio::spawn(async move {
            // The upgrade may be refused outright once the address is over its limit.
            let Ok(ws) = sec_support::ws_connect(http, "", &[]).await else {
                return None;
            };
            let mut c = Mq::new(ws, V3_1_1);
            // Held until the count is done, as the TCP ones are: a connection dropped here
            // would free its slot for a later one.
            let ok = c
                .try_connect(connect_packet(V3_1_1, &format!("wsflood{i}"), None, None))
                .await;
            Some((ok?, c))
        }));
    }
    let mut admitted = 0;
    let mut refused = 0;
    let mut keep = Vec::new();
    let mut keep_ws = Vec::new();
    for task in flood {
        let (ok, c) = task.await.unwrap();
        match ok {
            Some(code) => {
                assert_eq!(code, ReasonCode::Success);
                admitted += 1;
                keep.push(c);
            }
            None => refused += 1,
        }
    }
    for task in ws_flood {
        match task.await.unwrap() {
            Some((code, c)) => {
                assert_eq!(code, ReasonCode::Success);
                admitted += 1;
                keep_ws.push(c);
            }
            None => refused += 1,
        }
    }
    assert!(refused >= 40, "admitted {admitted}, refused {refused}");
    assert!(admitted <= 39, "admitted {admitted}, refused {refused}");
    drop(keep);
    drop(keep_ws);

    stop.store(true, Ordering::Relaxed);
    let (round_trips, slowest) = tokio::time::timeout(TIMEOUT, side)
        .await
        .expect("side client finished")
        .expect("side client never failed");
    assert!(round_trips > 10, "only {round_trips} round trips");
    assert!(
        slowest < SIDE_MAX_LATENCY,
        "slowest round trip {slowest:?} over {round_trips}"
    );
    gw.stop().await;
}
