//! A real `switchboard serve` whose store sits on a small filesystem that fills up (a tmpfs the
//! test mounts in its own mount namespace, `unshare -rm`): once a commit fails, the message it
//! carried gets no PUBACK (v5: DISCONNECT 0x80 instead), and after a restart with room again,
//! every message that was acknowledged is on disk.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use switchboard_mqtt::{
    BytesMut, Connect, Decoder, Packet, ProtocolVersion, PubAck, Publish, QoS, QosPid, ReasonCode,
    Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const STEP: Duration = Duration::from_secs(10);
/// Payload of each retained message: the free space (about 1.5 MB) takes some dozens.
const PAYLOAD: usize = 16 * 1024;

/// Runs two brokers one after the other in one mount namespace with a 4 MiB tmpfs as data
/// directory, 2.5 MiB of it taken by a filler file; the filler is removed before the second.
const SCRIPT: &str = r#"set -e
mount -t tmpfs -o size=4m tmpfs "$DATA"
dd if=/dev/zero of="$DATA/filler" bs=1024 count=2560 2>/dev/null
"$BIN" serve --mqtt 127.0.0.1:0 --http 127.0.0.1:0 --data-dir "$DATA" &
echo $! > "$PIDS/first"
wait $! || true
rm -f "$DATA/filler"
exec "$BIN" serve --mqtt 127.0.0.1:0 --http 127.0.0.1:0 --data-dir "$DATA"
"#;

struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr, client_id: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut decoder = Decoder::new(u32::MAX);
        decoder.set_version(ProtocolVersion::V5);
        let mut conn = Self {
            stream,
            decoder,
            buf: BytesMut::new(),
        };
        conn.send(Packet::Connect(Box::new(Connect::new(
            ProtocolVersion::V5,
            client_id,
        ))))
        .await;
        assert!(
            matches!(conn.recv().await, Some(Packet::ConnAck(a)) if a.code == ReasonCode::Success)
        );
        conn
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut out).unwrap();
        self.stream.write_all(&out).await.expect("write");
    }

    /// The next packet, `None` at end of stream.
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf).expect("valid packet") {
                return Some(p);
            }
            match tokio::time::timeout(STEP, self.stream.read_buf(&mut self.buf))
                .await
                .expect("a packet or the end in time")
            {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_never_acknowledged_and_what_was_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut child = Command::new("unshare")
        .args(["-rm", "sh", "-c", SCRIPT])
        .env("BIN", env!("CARGO_BIN_EXE_switchboard"))
        .env("DATA", &data)
        .env("PIDS", dir.path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening mqtt=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(addr.trim_end_matches(['"', ',']).to_owned());
            }
            if line.contains("ERROR") || line.contains("mount") {
                eprintln!("broker: {line}");
            }
        }
    });
    let first: SocketAddr = rx
        .recv_timeout(STEP)
        .expect("the first broker reports its address (unshare -rm and a tmpfs mount are needed)")
        .parse()
        .unwrap();

    // Retained QoS 1 messages, one at a time, until the store cannot take one.
    let mut conn = Conn::open(first, "filler").await;
    let mut acked = BTreeSet::new();
    let mut refusal = None;
    for n in 1..=1000u32 {
        let mut p = Publish::new(format!("fill/{n:04}"), vec![(n % 251) as u8; PAYLOAD]);
        p.retain = true;
        p.qos_pid = QosPid::AtLeastOnce(std::num::NonZeroU16::new(n as u16).unwrap());
        conn.send(Packet::Publish(p)).await;
        match conn.recv().await {
            Some(Packet::PubAck(PubAck {
                code: ReasonCode::Success,
                ..
            })) => {
                acked.insert(n);
            }
            other => {
                refusal = Some(other);
                break;
            }
        }
    }
    let Some(Some(Packet::Disconnect(disconnect))) = refusal else {
        panic!(
            "the full disk refused nothing or not with a DISCONNECT: {refusal:?}, {} acked",
            acked.len()
        );
    };
    assert_eq!(disconnect.code, ReasonCode::UnspecifiedError);
    assert!(!acked.is_empty(), "nothing fitted before the disk was full");

    // Stop the first broker cleanly; the script frees space and starts the second.
    let pid = std::fs::read_to_string(dir.path().join("first")).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());
    let second: SocketAddr = rx
        .recv_timeout(STEP)
        .expect("the second broker starts")
        .parse()
        .unwrap();

    // Every acknowledged message is retained after the restart; a marker published after the
    // SUBSCRIBE comes after the retained ones.
    let mut reader = Conn::open(second, "reader").await;
    reader
        .send(Packet::Subscribe(Subscribe {
            pid: std::num::NonZeroU16::new(1).unwrap(),
            filters: vec![("fill/#".into(), SubscriptionOptions::qos(QoS::AtMostOnce))],
            properties: Default::default(),
        }))
        .await;
    assert!(matches!(reader.recv().await, Some(Packet::SubAck(_))));
    let mut marker = Conn::open(second, "marker").await;
    marker
        .send(Packet::Publish(Publish::new("fill/zz-marker", "done")))
        .await;
    let mut kept = BTreeSet::new();
    loop {
        match reader.recv().await {
            Some(Packet::Publish(p)) if &*p.topic == "fill/zz-marker" => break,
            Some(Packet::Publish(p)) => {
                let n: u32 = p.topic["fill/".len()..].parse().unwrap();
                assert!(
                    p.payload.iter().all(|b| *b == (n % 251) as u8),
                    "fill/{n} garbled"
                );
                kept.insert(n);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let lost: Vec<_> = acked.difference(&kept).collect();
    assert!(
        lost.is_empty(),
        "acknowledged and lost after the restart: {lost:?} (kept {})",
        kept.len()
    );
    eprintln!(
        "{} acknowledged before the disk was full, {} kept after the restart",
        acked.len(),
        kept.len()
    );
    let _ = child.kill();
    let _ = child.wait();
}
