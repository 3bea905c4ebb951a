//! Crash test: a real `switchboard serve` process under QoS 1 and QoS 2 load from a publisher
//! and a subscriber with persistent sessions is killed with SIGKILL several times and
//! restarted on the same port and data directory. Every publication the broker acknowledged
//! (PUBACK, or PUBREC for QoS 2) must reach the subscriber, and no QoS 2 message twice.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_mqtt::{
    BytesMut, Connect, Decoder, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel,
    Publish, QoS, QosPid, Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const KILLS: usize = 4;
/// Load time before each kill.
const RUN: Duration = Duration::from_millis(400);
/// Longest wait for any one step (start, reconnect, catching up).
const STEP: Duration = Duration::from_secs(10);

/// Starts the broker; returns the process and its MQTT address.
fn start(dir: &Path, mqtt: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--mqtt",
            mqtt,
            "--http",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads stderr to its end (so the pipe never fills), reporting the MQTT address once.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening mqtt=").nth(1)
                && let Some(tx) = tx.take()
            {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(addr);
            }
            if line.contains("ERROR") {
                eprintln!("broker: {line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(STEP)
        .expect("broker reports its MQTT address");
    (
        child,
        addr.trim_end_matches(['"', ',']).parse().expect("address"),
    )
}

/// A minimal MQTT 5 connection that reports errors instead of panicking.
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr, client_id: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut decoder = Decoder::new(u32::MAX);
        decoder.set_version(ProtocolVersion::V5);
        let mut conn = Self {
            stream,
            decoder,
            buf: BytesMut::new(),
        };
        let mut connect = Connect::new(ProtocolVersion::V5, client_id);
        connect.clean_start = false;
        connect.properties.session_expiry_interval = Some(3600);
        conn.send(Packet::Connect(Box::new(connect))).await?;
        match conn.recv().await? {
            Packet::ConnAck(ack) if !ack.code.is_error() => Ok(conn),
            other => Err(std::io::Error::other(format!("CONNECT refused: {other:?}"))),
        }
    }

    async fn send(&mut self, packet: Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        packet
            .encode(ProtocolVersion::V5, &mut out)
            .map_err(std::io::Error::other)?;
        self.stream.write_all(&out).await
    }

    async fn recv(&mut self) -> std::io::Result<Packet> {
        loop {
            if let Some(p) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(std::io::Error::other)?
            {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// Connects, retrying while the broker restarts.
async fn reconnect(addr: SocketAddr, client_id: &str) -> Conn {
    tokio::time::timeout(STEP, async {
        loop {
            match Conn::open(addr, client_id).await {
                Ok(conn) => return conn,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
    .expect("reconnected in time")
}

#[derive(Debug, Default)]
struct Counts {
    published: u64,
    acknowledged: HashSet<u64>,
    received: HashMap<u64, u32>,
    /// Ids published with QoS 2.
    qos2: HashSet<u64>,
}

fn id_of(p: &Publish) -> u64 {
    std::str::from_utf8(&p.payload).unwrap().parse().unwrap()
}

/// Publishers running at once (each with its own persistent session).
const PUBLISHERS: u64 = 3;

/// Publishes message after message (alternately QoS 1 and QoS 2) until `stop`, finishing each
/// exchange across reconnects with the same packet id. Message ids are `n * PUBLISHERS + index`.
async fn publisher(
    addr: SocketAddr,
    index: u64,
    counts: Arc<Mutex<Counts>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let client_id = format!("crash-pub-{index}");
    let mut conn = reconnect(addr, &client_id).await;
    let mut n: u64 = 0;
    while !stop.is_cancelled() {
        n += 1;
        let id = n * PUBLISHERS + index;
        let pid = PacketId::new((n % 60_000 + 1) as u16).unwrap();
        let qos = if n % 2 == 1 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        {
            let mut c = counts.lock().unwrap();
            c.published += 1;
            if qos == QoS::ExactlyOnce {
                c.qos2.insert(id);
            }
        }
        let mut publish = Publish::new(format!("crash/{index}"), id.to_string().into_bytes());
        publish.qos_pid = QosPid::new(qos, pid);
        let mut released = false;
        loop {
            let step = async {
                if released {
                    conn.send(Packet::PubRel(PubRel::new(pid))).await?;
                } else {
                    conn.send(Packet::Publish(publish.clone())).await?;
                }
                loop {
                    match conn.recv().await? {
                        Packet::PubAck(ack) if ack.pid == pid => {
                            counts.lock().unwrap().acknowledged.insert(id);
                            return Ok(());
                        }
                        Packet::PubRec(rec) if rec.pid == pid => {
                            counts.lock().unwrap().acknowledged.insert(id);
                            released = true;
                            conn.send(Packet::PubRel(PubRel::new(pid))).await?;
                        }
                        Packet::PubComp(comp) if comp.pid == pid => return Ok(()),
                        _ => {}
                    }
                }
            };
            let done: std::io::Result<()> = step.await;
            if done.is_ok() {
                break;
            }
            conn = reconnect(addr, &client_id).await;
            publish.dup = true;
        }
    }
}

/// Receives and acknowledges, counting each message id delivered to the application (a QoS 2
/// message is delivered when its PUBLISH first arrives, and its packet id is remembered until
/// PUBREL, as the MQTT receiver's method B does).
async fn subscriber(
    addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    caught_up: Arc<tokio::sync::Notify>,
) {
    let mut awaiting_rel: HashSet<u16> = HashSet::new();
    loop {
        let mut conn = reconnect(addr, "crash-sub").await;
        let run = async {
            loop {
                match conn.recv().await? {
                    Packet::Publish(p) => match p.qos_pid {
                        QosPid::AtLeastOnce(pid) => {
                            *counts
                                .lock()
                                .unwrap()
                                .received
                                .entry(id_of(&p))
                                .or_default() += 1;
                            caught_up.notify_one();
                            conn.send(Packet::PubAck(PubAck::new(pid))).await?;
                        }
                        QosPid::ExactlyOnce(pid) => {
                            if awaiting_rel.insert(pid.get()) {
                                *counts
                                    .lock()
                                    .unwrap()
                                    .received
                                    .entry(id_of(&p))
                                    .or_default() += 1;
                                caught_up.notify_one();
                            }
                            conn.send(Packet::PubRec(PubRec::new(pid))).await?;
                        }
                        QosPid::AtMostOnce => {}
                    },
                    Packet::PubRel(rel) => {
                        awaiting_rel.remove(&rel.pid.get());
                        conn.send(Packet::PubComp(PubComp::new(rel.pid))).await?;
                    }
                    _ => {}
                }
            }
        };
        let _: std::io::Result<()> = run.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path(), "127.0.0.1:0");
    let counts = Arc::new(Mutex::new(Counts::default()));
    let caught_up = Arc::new(tokio::sync::Notify::new());
    // The persistent subscription exists (SUBACK) before anything is published.
    {
        let mut conn = reconnect(addr, "crash-sub").await;
        let subscribe = Subscribe {
            pid: PacketId::new(1).unwrap(),
            filters: vec![("crash/#".into(), SubscriptionOptions::qos(QoS::ExactlyOnce))],
            properties: Default::default(),
        };
        conn.send(Packet::Subscribe(subscribe)).await.unwrap();
        assert!(matches!(conn.recv().await.unwrap(), Packet::SubAck(_)));
    }
    let sub = tokio::spawn(subscriber(
        addr,
        Arc::clone(&counts),
        Arc::clone(&caught_up),
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|i| tokio::spawn(publisher(addr, i, Arc::clone(&counts), stop.clone())))
        .collect();
    for _ in 0..KILLS {
        tokio::time::sleep(RUN).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        (child, _) = start(dir.path(), &addr.to_string());
    }
    tokio::time::sleep(RUN).await;
    stop.cancel();
    for publisher in publishers {
        tokio::time::timeout(STEP, publisher)
            .await
            .expect("publisher finished")
            .unwrap();
    }
    // Everything acknowledged arrives.
    let missing = tokio::time::timeout(STEP, async {
        loop {
            let notified = caught_up.notified();
            {
                let c = counts.lock().unwrap();
                if c.acknowledged.iter().all(|id| c.received.contains_key(id)) {
                    return;
                }
            }
            notified.await;
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    sub.abort();
    let c = counts.lock().unwrap();
    let lost: Vec<_> = c
        .acknowledged
        .iter()
        .filter(|id| !c.received.contains_key(id))
        .collect();
    let dup_qos1 = c
        .received
        .iter()
        .filter(|(id, n)| !c.qos2.contains(id) && **n > 1)
        .count();
    let dup_qos2: Vec<_> = c
        .received
        .iter()
        .filter(|(id, n)| c.qos2.contains(id) && **n > 1)
        .collect();
    println!(
        "crash test: {} kills, {PUBLISHERS} publishers, published {}, acknowledged {}, received {} distinct, duplicates QoS 1 {}, QoS 2 {}, {:?}",
        KILLS,
        c.published,
        c.acknowledged.len(),
        c.received.len(),
        dup_qos1,
        dup_qos2.len(),
        started.elapsed()
    );
    assert!(
        missing.is_ok() && lost.is_empty(),
        "acknowledged but never received: {lost:?}"
    );
    assert!(
        dup_qos2.is_empty(),
        "QoS 2 messages delivered twice: {dup_qos2:?}"
    );
    assert!(
        c.acknowledged.len() > 10,
        "too little load to mean anything"
    );
}

/// A clean-session v5 connection with a will on `wills/<name>`; CONNACK read.
async fn with_will(addr: SocketAddr, name: &str) -> Conn {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut decoder = Decoder::new(u32::MAX);
    decoder.set_version(ProtocolVersion::V5);
    let mut conn = Conn {
        stream,
        decoder,
        buf: BytesMut::new(),
    };
    let mut connect = Connect::new(ProtocolVersion::V5, name);
    connect.will = Some(switchboard_mqtt::LastWill {
        topic: format!("wills/{name}").into(),
        payload: format!("{name} offline").into_bytes().into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    conn.send(Packet::Connect(Box::new(connect))).await.unwrap();
    assert!(matches!(conn.recv().await.unwrap(), Packet::ConnAck(a) if !a.code.is_error()));
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// [MQTT-3.1.2-8]: a process that dies closes every connection without a DISCONNECT, so the
/// will of a client connected at a `kill -9` is published after the restart; the will of a
/// client that disconnected normally before it is not.
async fn the_will_of_a_client_connected_at_a_kill_is_published_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path(), "127.0.0.1:0");
    let mut watcher = reconnect(addr, "will-watcher").await;
    watcher
        .send(Packet::Subscribe(Subscribe {
            pid: PacketId::new(1).unwrap(),
            filters: vec![("wills/#".into(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
            properties: Default::default(),
        }))
        .await
        .unwrap();
    assert!(matches!(watcher.recv().await.unwrap(), Packet::SubAck(_)));
    let _connected = with_will(addr, "plug").await;
    let mut leaving = with_will(addr, "lamp").await;
    leaving
        .send(Packet::Disconnect(Default::default()))
        .await
        .unwrap();
    // The server closes its side once the session is detached (the will withdrawn in the store).
    let eof = tokio::time::timeout(STEP, leaving.recv())
        .await
        .expect("closed in time");
    assert!(eof.is_err(), "{eof:?}");
    // A QoS 1 retained message acknowledged after that: its commit comes after the withdrawal.
    let mut sync = Publish::new("sync/marker", "x");
    sync.retain = true;
    sync.qos_pid = QosPid::AtLeastOnce(PacketId::new(2).unwrap());
    watcher.send(Packet::Publish(sync)).await.unwrap();
    assert!(matches!(watcher.recv().await.unwrap(), Packet::PubAck(_)));

    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let (mut child, _) = start(dir.path(), &addr.to_string());
    let mut watcher = reconnect(addr, "will-watcher").await;
    let mut marker = reconnect(addr, "will-marker").await;
    let mut end = Publish::new("wills/zz-end", "end");
    end.qos_pid = QosPid::AtLeastOnce(PacketId::new(1).unwrap());
    marker.send(Packet::Publish(end)).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(STEP, async {
        loop {
            match watcher.recv().await.unwrap() {
                Packet::Publish(p) => {
                    if let QosPid::AtLeastOnce(pid) = p.qos_pid {
                        watcher
                            .send(Packet::PubAck(PubAck::new(pid)))
                            .await
                            .unwrap();
                    }
                    let text = String::from_utf8_lossy(&p.payload).into_owned();
                    if text == "end" {
                        return;
                    }
                    got.push(text);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("the marker arrives");
    assert_eq!(got, ["plug offline"]);
    child.kill().unwrap();
    child.wait().unwrap();
}
