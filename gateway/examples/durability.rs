//! QoS 1 throughput into a persistent session under each `[store] durability` mode, printed
//! as messages per second and as a ratio of the in-memory (`none`) figure.
//!
//! `cargo run --release -p switchboard --example durability [messages]`
//!
//! Eight publishers each keep 32 QoS 1 publications in flight towards one online subscriber
//! whose session outlives its connection, so every message is recorded (and, in `fsync` mode,
//! committed) before its PUBACK. A figure, not an assertion: it depends on the disk.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchboard::broker::{BrokerConfig, DurabilityMode};
use switchboard::config::Config;
use switchboard_mqtt::{
    BytesMut, Connect, Decoder, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, QosPid,
    Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const PUBLISHERS: usize = 8;
const WINDOW: usize = 32;

struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    out: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr, client_id: &str, persistent: bool) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut decoder = Decoder::new(u32::MAX);
        decoder.set_version(ProtocolVersion::V5);
        let mut conn = Self {
            stream,
            decoder,
            buf: BytesMut::new(),
            out: BytesMut::new(),
        };
        let mut connect = Connect::new(ProtocolVersion::V5, client_id);
        if persistent {
            connect.properties.session_expiry_interval = Some(3600);
        }
        conn.queue(Packet::Connect(Box::new(connect)))?;
        conn.flush().await?;
        anyhow::ensure!(matches!(conn.recv().await?, Packet::ConnAck(_)));
        Ok(conn)
    }

    fn queue(&mut self, packet: Packet) -> anyhow::Result<()> {
        packet.encode(ProtocolVersion::V5, &mut self.out)?;
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf)? {
                return Ok(p);
            }
            anyhow::ensure!(self.stream.read_buf(&mut self.buf).await? > 0, "closed");
        }
    }
}

async fn measure(mode: DurabilityMode, total: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        broker: BrokerConfig {
            sys_interval: 0,
            max_queued_messages: total + 1,
            max_queued_bytes: usize::MAX,
            ..BrokerConfig::default()
        },
        ..Config::default()
    };
    config.listeners.mqtt = vec!["127.0.0.1:0".parse()?];
    config.listeners.http = Vec::new();
    config.store.durability = mode;
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(switchboard::run(config, shutdown.clone(), move |b| {
        let _ = tx.send(b.mqtt[0]);
    }));
    let addr = rx.await?;

    let mut sub = Conn::open(addr, "bench-sub", true).await?;
    sub.queue(Packet::Subscribe(Subscribe {
        pid: PacketId::MIN,
        filters: vec![("bench/#".into(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
        properties: Default::default(),
    }))?;
    sub.flush().await?;
    anyhow::ensure!(matches!(sub.recv().await?, Packet::SubAck(_)));
    let subscriber = tokio::spawn(async move {
        let mut got = 0;
        while got < total {
            if let Packet::Publish(p) = sub.recv().await? {
                got += 1;
                if let QosPid::AtLeastOnce(pid) = p.qos_pid {
                    sub.queue(Packet::PubAck(PubAck::new(pid)))?;
                }
                if sub.decoder_is_idle() {
                    sub.flush().await?;
                }
            }
        }
        sub.flush().await?;
        anyhow::Ok(())
    });

    let started = Instant::now();
    let mut publishers = Vec::new();
    for n in 0..PUBLISHERS {
        let count = total / PUBLISHERS + usize::from(n < total % PUBLISHERS);
        publishers.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, &format!("bench-pub-{n}"), false).await?;
            let (mut sent, mut acked) = (0usize, 0usize);
            while acked < count {
                while sent < count && sent - acked < WINDOW {
                    sent += 1;
                    let mut p = Publish::new(format!("bench/{n}"), vec![0x5A; 64]);
                    p.qos_pid = QosPid::AtLeastOnce(
                        PacketId::new((sent % 65_535 + 1) as u16).unwrap_or(PacketId::MIN),
                    );
                    conn.queue(Packet::Publish(p))?;
                }
                conn.flush().await?;
                if let Packet::PubAck(_) = conn.recv().await? {
                    acked += 1;
                }
            }
            anyhow::Ok(())
        }));
    }
    for p in publishers {
        p.await??;
    }
    tokio::time::timeout(Duration::from_secs(60), subscriber).await???;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    task.await??;
    Ok(rate)
}

impl Conn {
    /// Whether no whole packet is buffered (time to write the acknowledgements out).
    fn decoder_is_idle(&self) -> bool {
        self.buf.len() < 2
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args().nth(1).map_or(Ok(40_000), |s| s.parse())?;
    println!(
        "QoS 1 into a persistent session: {total} messages of 64 bytes, {PUBLISHERS} publishers x {WINDOW} in flight"
    );
    let none = measure(DurabilityMode::None, total).await?;
    println!("none   {none:>10.0} msg/s  1.00 (in-memory)");
    for (name, mode) in [
        ("batch", DurabilityMode::Batch),
        ("fsync", DurabilityMode::Fsync),
    ] {
        let rate = measure(mode, total).await?;
        println!("{name:<6} {rate:>10.0} msg/s  {:.2}", rate / none);
    }
    Ok(())
}
