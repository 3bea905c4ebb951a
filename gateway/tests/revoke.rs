//! A security reload (SIGHUP) takes effect on open connections: a client whose token was
//! revoked, whose user was removed or whose password changed is disconnected (MQTT 5:
//! DISCONNECT 0x87; 3.1.1: closed) and the log names it and why; every other client stays
//! connected, and ACL changes apply to open connections from their next request.
//!
//! The real `switchboard` binary (the signal goes to it alone) on `127.0.0.1:0`, raw MQTT
//! clients and `mosquitto_sub`. Every wait is for an event (a packet, a close, a log line),
//! bounded.

mod sec_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sec_support::{Mq, V3_1_1, V5, connect_packet, tcp, text};
use switchboard::security::token::{self, Claims};
use switchboard_mqtt::{Connect, LastWill, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// Longest wait for the gateway's log and for `mosquitto_sub`.
const LOG_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the `switchboard` binary to completion; its standard output.
fn cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .output()
        .expect("run switchboard");
    assert!(
        out.status.success(),
        "switchboard {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Adds `user` with `password` (argon2id) to the password file at `path`.
fn add_user(path: &Path, user: &str, password: &str) {
    cli(&[
        "passwd",
        path.to_str().unwrap(),
        "add",
        user,
        "--password",
        password,
    ]);
}

/// A token named `name` in `data`, granting `publish` and `subscribe`.
fn token(data: &Path, name: &str, publish: &[&str], subscribe: &[&str]) -> String {
    let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    let claims = Claims {
        id: String::new(),
        name: name.into(),
        publish: owned(publish),
        subscribe: owned(subscribe),
        expires: None,
        origin: None,
        issued: token::unix_now(),
    };
    token::create(data, claims).expect("token created").1
}

/// `switchboard serve` with a password file, an ACL file (when given) and a data directory,
/// logging at `info`; killed on drop.
#[derive(Debug)]
struct Served {
    child: Child,
    mqtt: SocketAddr,
    log: Lines<BufReader<ChildStderr>>,
}

impl Served {
    async fn start(data: &Path, passwd: &Path, acl: Option<&Path>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(["serve", "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data)
            .arg("--www")
            .arg(data)
            .arg("--password-file")
            .arg(passwd);
        if let Some(acl) = acl {
            command.arg("--acl-file").arg(acl);
        }
        let mut child = command
            .env("SWITCHBOARD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn switchboard");
        let log = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut served = Self {
            child,
            mqtt: "127.0.0.1:0".parse().unwrap(),
            log,
        };
        let line = served.lines_until("listening mqtt=").await.pop().unwrap();
        served.mqtt = line
            .split("listening mqtt=")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        served
    }

    /// Every log line up to the first containing `needle`; that one is last.
    async fn lines_until(&mut self, needle: &str) -> Vec<String> {
        tokio::time::timeout(LOG_TIMEOUT, async {
            let mut lines = Vec::new();
            loop {
                let line = self.log.next_line().await.unwrap().expect("log line");
                eprintln!("gateway: {line}");
                let found = line.contains(needle);
                lines.push(line);
                if found {
                    return lines;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no log line with `{needle}`"))
    }

    /// Reads the log until each of `lines` (a list of fragments every one of which must
    /// appear on one line) has been seen, in any order.
    async fn log_has(&mut self, lines: &[&[&str]]) {
        let mut missing: Vec<&[&str]> = lines.to_vec();
        tokio::time::timeout(LOG_TIMEOUT, async {
            while !missing.is_empty() {
                let line = self.log.next_line().await.unwrap().expect("log line");
                eprintln!("gateway: {line}");
                missing.retain(|parts| !parts.iter().all(|p| line.contains(p)));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("log lines missing: {missing:?}"));
    }

    /// Sends SIGHUP and waits until the rules are reloaded (the cuts follow at once).
    async fn reload(&mut self) {
        let pid = self.child.id().expect("gateway running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        self.lines_until("security rules reloaded").await;
    }
}

/// A CONNECT with a user name and password.
fn login(v: ProtocolVersion, id: &str, user: &str, password: &str) -> Connect {
    connect_packet(v, id, Some(user), Some(password))
}

/// Connects and asserts the CONNACK is a success.
async fn connected(v: ProtocolVersion, addr: SocketAddr, connect: Connect) -> Mq<TcpStream> {
    let mut client = tcp(addr, v).await;
    let ack = client.connect(connect).await;
    assert_eq!(ack.code, ReasonCode::Success);
    client
}

/// Asserts that the broker cut `client`: MQTT 5 with DISCONNECT 0x87 first, 3.1.1 without.
async fn assert_cut(client: &mut Mq<TcpStream>, what: &str) {
    let goodbye = client.closed().await;
    if client.version.is_v5() {
        assert_eq!(
            goodbye.map(|d| d.code),
            Some(ReasonCode::NotAuthorized),
            "{what}"
        );
    } else {
        assert!(goodbye.is_none(), "{what}: {goodbye:?}");
    }
}

/// A running `mosquitto_sub -V mqttv5 -d`, past its SUBACK.
#[derive(Debug)]
struct MosquittoSub {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl MosquittoSub {
    async fn start(addr: SocketAddr, args: &[&str]) -> Self {
        // Its stdout is a pipe: `stdbuf -oL` makes it line buffered.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-V", "mqttv5", "-d", "-h"])
            .arg(addr.ip().to_string())
            .arg("-p")
            .arg(addr.port().to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto_sub (Debian `mosquitto-clients`; `cargo xtask setup`)");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut sub = Self { child, lines };
        sub.line_with("received SUBACK").await;
        sub
    }

    /// Reads its output up to a line containing `needle`.
    async fn line_with(&mut self, needle: &str) {
        tokio::time::timeout(LOG_TIMEOUT, async {
            while let Some(line) = self.lines.next_line().await.expect("read") {
                eprintln!("mosquitto_sub: {line}");
                if line.contains(needle) {
                    return;
                }
            }
            panic!("mosquitto_sub ended before printing `{needle}`");
        })
        .await
        .unwrap_or_else(|_| panic!("mosquitto_sub did not print `{needle}`"));
    }

    /// Asserts that it was sent DISCONNECT 0x87 (135) and then exited.
    async fn assert_cut(mut self) {
        self.line_with("Received DISCONNECT (135)").await;
        let status = tokio::time::timeout(LOG_TIMEOUT, self.child.wait())
            .await
            .expect("mosquitto_sub exits after the DISCONNECT")
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

/// A password file with `admin` (who may do anything) and an ACL saying so; `data` created.
fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let passwd = dir.join("passwd");
    add_user(&passwd, "admin", "admin-pw");
    let acl = dir.join("acl");
    std::fs::write(&acl, "user admin\ntopic readwrite #\n").unwrap();
    (data, passwd, acl)
}

/// `switchboard token revoke` + SIGHUP: every connection using the token is cut, MQTT 5
/// (a raw client and `mosquitto_sub`) with DISCONNECT 0x87 and 3.1.1 closed; the log names
/// each client id and why. The cut client's will is published and its session is kept, as for
/// any close the server initiates. A client with another token stays and keeps receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_cuts_its_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (data, passwd, acl) = setup(dir.path());
    let kitchen = token(&data, "kitchen", &["cmnd/kitchen/#"], &["stat/kitchen/#"]);
    let hall = token(&data, "hall", &[], &["stat/hall/#"]);
    let mut gw = Served::start(&data, &passwd, Some(&acl)).await;

    let mut admin = connected(V5, gw.mqtt, login(V5, "admin", "admin", "admin-pw")).await;
    assert_eq!(
        admin.subscribe("cmnd/#", QoS::AtLeastOnce).await,
        ReasonCode::GrantedQoS1
    );
    // Kitchen token: MQTT 5 with a will and a session that outlives the connection, 3.1.1,
    // and a real third-party client.
    let mut with_will = login(V5, "kitchen-5", "token", &kitchen);
    with_will.will = Some(LastWill {
        topic: "cmnd/kitchen/gone".into(),
        payload: "offline".as_bytes().to_vec().into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    with_will.properties.session_expiry_interval = Some(300);
    let mut k5 = connected(V5, gw.mqtt, with_will).await;
    assert_eq!(
        k5.subscribe("stat/kitchen/#", QoS::AtLeastOnce).await,
        ReasonCode::GrantedQoS1
    );
    let mut k3 = connected(
        V3_1_1,
        gw.mqtt,
        login(V3_1_1, "kitchen-3", "token", &kitchen),
    )
    .await;
    let mosquitto = MosquittoSub::start(
        gw.mqtt,
        &[
            "-i",
            "kitchen-m",
            "-u",
            "token",
            "-P",
            &kitchen,
            "-t",
            "stat/kitchen/#",
        ],
    )
    .await;
    let mut h = connected(V5, gw.mqtt, login(V5, "hall-5", "token", &hall)).await;
    assert_eq!(
        h.subscribe("stat/hall/#", QoS::AtLeastOnce).await,
        ReasonCode::GrantedQoS1
    );

    cli(&[
        "token",
        "--data-dir",
        data.to_str().unwrap(),
        "revoke",
        "kitchen",
    ]);
    gw.reload().await;
    assert_cut(&mut k5, "kitchen v5").await;
    assert_cut(&mut k3, "kitchen 3.1.1").await;
    mosquitto.assert_cut().await;
    gw.log_has(&[
        &["client_id=kitchen-5", "token revoked"],
        &["client_id=kitchen-3", "token revoked"],
        &["client_id=kitchen-m", "token revoked"],
    ])
    .await;

    // The will of the cut MQTT 5 client was published.
    let will = admin.recv_publish().await;
    assert_eq!(
        (&*will.topic, text(&will)),
        ("cmnd/kitchen/gone", "offline")
    );
    // The other token's client is still connected and receiving.
    admin
        .publish("stat/hall/lamp", "on", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(text(&h.recv_publish().await), "on");
    assert!(h.drain().await.is_empty());
    // The revoked token is refused at CONNECT; the cut client's session is still there for
    // whoever may resume it.
    let mut again = tcp(gw.mqtt, V5).await;
    let refused = again
        .connect(login(V5, "kitchen-5", "token", &kitchen))
        .await;
    assert_eq!(refused.code, ReasonCode::NotAuthorized);
    let mut resume = login(V5, "kitchen-5", "admin", "admin-pw");
    resume.clean_start = false;
    let mut resumed = tcp(gw.mqtt, V5).await;
    assert!(resumed.connect(resume).await.session_present);
}

/// `switchboard passwd FILE remove USER` or a new password for a user + SIGHUP: that user's
/// open connections are cut (the log says `user removed` / `password changed`); a user whose
/// entry did not change stays connected, though the file was rewritten around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_user_and_changed_password_cut_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (data, passwd, _) = setup(dir.path());
    for user in ["alice", "bob", "carol"] {
        add_user(&passwd, user, &format!("{user}-pw"));
    }
    let mut gw = Served::start(&data, &passwd, None).await;
    let mut alice = connected(V5, gw.mqtt, login(V5, "alice", "alice", "alice-pw")).await;
    assert_eq!(
        alice.subscribe("news/#", QoS::AtLeastOnce).await,
        ReasonCode::GrantedQoS1
    );
    let mut bob3 = connected(V3_1_1, gw.mqtt, login(V3_1_1, "bob-3", "bob", "bob-pw")).await;
    let mut bob5 = connected(V5, gw.mqtt, login(V5, "bob-5", "bob", "bob-pw")).await;
    let carol = MosquittoSub::start(
        gw.mqtt,
        &[
            "-i", "carol", "-u", "carol", "-P", "carol-pw", "-t", "news/#",
        ],
    )
    .await;

    cli(&["passwd", passwd.to_str().unwrap(), "remove", "bob"]);
    add_user(&passwd, "carol", "carol-new-pw");
    gw.reload().await;
    assert_cut(&mut bob3, "bob 3.1.1").await;
    assert_cut(&mut bob5, "bob v5").await;
    carol.assert_cut().await;
    gw.log_has(&[
        &["client_id=bob-3", "user removed"],
        &["client_id=bob-5", "user removed"],
        &["client_id=carol", "password changed"],
    ])
    .await;

    // Alice's entry is unchanged: still connected, still receiving.
    let mut admin = connected(V5, gw.mqtt, login(V5, "admin", "admin", "admin-pw")).await;
    admin
        .publish("news/today", "hello", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(text(&alice.recv_publish().await), "hello");
    // Carol logs in with her new password and stays through a reload that changes nothing.
    let mut carol = connected(V5, gw.mqtt, login(V5, "carol", "carol", "carol-new-pw")).await;
    gw.reload().await;
    assert!(carol.drain().await.is_empty());
    assert!(alice.drain().await.is_empty());
}

/// An ACL change + SIGHUP applies to open connections from their next request: a subscribe
/// the new ACL forbids is denied (v5 0x87, 3.1.1 0x80), messages it no longer lets the client
/// read stop arriving on an existing subscription, and the client stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_change_applies_to_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (data, passwd, acl) = setup(dir.path());
    add_user(&passwd, "alice", "alice-pw");
    std::fs::write(
        &acl,
        "user admin\ntopic readwrite #\nuser alice\ntopic read a/#\n",
    )
    .unwrap();
    let mut gw = Served::start(&data, &passwd, Some(&acl)).await;
    let mut admin = connected(V5, gw.mqtt, login(V5, "admin", "admin", "admin-pw")).await;
    let mut clients = Vec::new();
    for v in [V3_1_1, V5] {
        let id = format!("alice-{}", if v.is_v5() { 5 } else { 3 });
        let mut alice = connected(v, gw.mqtt, login(v, &id, "alice", "alice-pw")).await;
        assert_eq!(
            alice.subscribe("a/#", QoS::AtLeastOnce).await,
            ReasonCode::GrantedQoS1
        );
        clients.push(alice);
    }
    admin.publish("a/1", "a1", QoS::AtLeastOnce, false).await;
    for alice in &mut clients {
        assert_eq!(alice.recv_until("a1").await, ["a1"]);
    }

    std::fs::write(
        &acl,
        "user admin\ntopic readwrite #\nuser alice\ntopic read b/#\n",
    )
    .unwrap();
    gw.reload().await;
    // `a/2` (no longer readable) is not delivered on the existing `a/#` subscription: the
    // permitted `b/1` published after it arrives first.
    assert_eq!(
        clients[0].subscribe("b/#", QoS::AtLeastOnce).await,
        ReasonCode::GrantedQoS1
    );
    assert_eq!(
        clients[1].subscribe("b/#", QoS::AtLeastOnce).await,
        ReasonCode::GrantedQoS1
    );
    admin.publish("a/2", "a2", QoS::AtLeastOnce, false).await;
    admin.publish("b/1", "b1", QoS::AtLeastOnce, false).await;
    for alice in &mut clients {
        assert_eq!(alice.recv_until("b1").await, ["b1"]);
        let code = alice.subscribe("a/x", QoS::AtLeastOnce).await;
        if alice.version.is_v5() {
            assert_eq!(code, ReasonCode::NotAuthorized);
        } else {
            assert!(code.is_error(), "{code:?}");
        }
        // Still connected.
        assert!(alice.drain().await.is_empty());
    }
}
