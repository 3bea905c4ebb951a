//! Users, ACLs, tokens, the anonymous policy and abuse limits, end to end: the gateway
//! in-process (or the `switchboard` binary for SIGHUP) on `127.0.0.1:0`, raw MQTT packets over
//! TCP and WebSocket.

mod sec_support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sec_support::{Gateway, Mq, TIMEOUT, V3_1_1, V5, connect_packet, tcp, text};
use switchboard::config::Config;
use switchboard::security::token::{self, Claims};
use switchboard_mqtt::{ProtocolVersion, QoS, ReasonCode};
use tokio::io::AsyncBufReadExt as _;

/// Fast failed-login back-off so refusals do not slow the other tests down.
fn quick(config: &mut Config) {
    config.limits.login_backoff_ms = 1;
    config.limits.login_backoff_max_ms = 2;
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the `switchboard` binary; its standard output.
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

/// A password file with alice (argon2id, through `switchboard passwd`), bob (Mosquitto `$7$`)
/// and carol (Mosquitto `$6$`), the latter two written by the real `mosquitto_passwd`.
fn users_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("passwd");
    let mosquitto = sec_support::mosquitto_passwd();
    let run = |args: &[&str]| {
        let status = std::process::Command::new(&mosquitto)
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "mosquitto_passwd {args:?}");
    };
    let file = path.to_str().unwrap();
    run(&["-c", "-b", file, "bob", "bob-pw"]);
    run(&["-H", "sha512", "-b", file, "carol", "carol-pw"]);
    run(&["-b", file, "admin", "admin-pw"]);
    cli(&["passwd", file, "add", "alice", "--password", "alice-pw"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("bob:$7$"), "{text}");
    assert!(text.contains("carol:$6$"), "{text}");
    assert!(text.contains("alice:$argon2id$"), "{text}");
    assert_eq!(cli(&["passwd", file, "list"]), "admin\nalice\nbob\ncarol\n");
    path
}

async fn both(mut test: impl AsyncFnMut(ProtocolVersion)) {
    test(V3_1_1).await;
    test(V5).await;
}

/// Without users: anonymous from loopback is accepted, from a non-loopback address (a
/// WebSocket forwarded by a trusted proxy) refused with 0x87 / return code 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_only_from_loopback_by_default() {
    let gw = Gateway::start(|c| {
        quick(c);
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    both(async |v| {
        let mut local = tcp(gw.mqtt, v).await;
        assert_eq!(
            local.connect(connect_packet(v, "", None, None)).await.code,
            ReasonCode::Success
        );
        let ws = gw.ws("", &[]).await.unwrap();
        let mut ws = Mq::new(ws, v);
        assert_eq!(
            ws.connect(connect_packet(v, "", None, None)).await.code,
            ReasonCode::Success
        );
        for i in 0..2 {
            let ws = gw
                .ws("", &[("x-forwarded-for", "203.0.113.9")])
                .await
                .unwrap();
            let mut remote = Mq::new(ws, v);
            let ack = remote
                .connect(connect_packet(v, &format!("r{i}"), None, None))
                .await;
            assert_eq!(ack.code, ReasonCode::NotAuthorized, "{v:?}");
            assert!(remote.closed().await.is_none());
        }
    })
    .await;
    gw.stop().await;

    // `allow_anonymous` opens it.
    let gw = Gateway::start(|c| {
        quick(c);
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.security.allow_anonymous = true;
    })
    .await;
    let ws = gw
        .ws("", &[("x-forwarded-for", "203.0.113.9")])
        .await
        .unwrap();
    let mut remote = Mq::new(ws, V5);
    assert_eq!(
        remote
            .connect(connect_packet(V5, "r", None, None))
            .await
            .code,
        ReasonCode::Success
    );
    gw.stop().await;
}

/// argon2id users and Mosquitto `$7$`/`$6$` users log in; a wrong password gets 0x86 / return
/// code 4; with users configured anonymous clients are refused even from loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_from_argon2_and_mosquitto_password_files() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = users_file(dir.path());
    let gw = Gateway::start(|c| {
        quick(c);
        c.security.password_file = Some(passwd.clone());
    })
    .await;
    both(async |v| {
        for (user, pw) in [
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("carol", "carol-pw"),
        ] {
            let mut c = tcp(gw.mqtt, v).await;
            let ack = c
                .connect(connect_packet(v, user, Some(user), Some(pw)))
                .await;
            assert_eq!(ack.code, ReasonCode::Success, "{user} {v:?}");
            c.drain().await;
        }
        for (user, pw) in [("alice", "bob-pw"), ("bob", "x"), ("nobody", "x")] {
            let mut c = tcp(gw.mqtt, v).await;
            let ack = c
                .connect(connect_packet(v, "w", Some(user), Some(pw)))
                .await;
            assert_eq!(ack.code, ReasonCode::BadUserNameOrPassword, "{user} {v:?}");
        }
        let mut anon = tcp(gw.mqtt, v).await;
        let ack = anon.connect(connect_packet(v, "anon", None, None)).await;
        assert_eq!(ack.code, ReasonCode::NotAuthorized, "{v:?}");
    })
    .await;
    gw.stop().await;
}

const ACL: &str = "\
# anonymous section: nothing
user alice
topic read a/#
topic write w/#
topic deny a/secret/#
user admin
topic readwrite #
pattern readwrite p/%u/%c/#
";

/// Mosquitto ACL semantics: read/write/deny, patterns with `%u` and `%c`, denied subscribe
/// (0x87 / 0x80), denied publish (v5 PUBACK 0x87, 3.1.1 dropped), and no leak at delivery
/// (a `#` subscription with read on `a/#` only) or of retained messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_file_rules() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = users_file(dir.path());
    let acl = write(dir.path(), "acl", ACL);
    let gw = Gateway::start(|c| {
        quick(c);
        c.security.password_file = Some(passwd.clone());
        c.security.acl_file = Some(acl.clone());
    })
    .await;
    let mut admin = tcp(gw.mqtt, V5).await;
    admin
        .connect(connect_packet(V5, "admin", Some("admin"), Some("admin-pw")))
        .await;
    for topic in ["a/r", "b/r", "a/secret/r"] {
        let (code, _) = admin.publish(topic, topic, QoS::AtLeastOnce, true).await;
        assert_eq!(code, Some(ReasonCode::Success));
    }
    both(async |v| {
        let mut alice = tcp(gw.mqtt, v).await;
        let ack = alice
            .connect(connect_packet(v, "c1", Some("alice"), Some("alice-pw")))
            .await;
        assert_eq!(ack.code, ReasonCode::Success);
        // Denied subscriptions.
        let code = alice.subscribe("a/secret/#", QoS::AtLeastOnce).await;
        assert!(code.is_error(), "{code:?}");
        if v.is_v5() {
            assert_eq!(code, ReasonCode::NotAuthorized);
        }
        assert!(alice.subscribe("w/#", QoS::AtLeastOnce).await.is_error());
        // `#` overlaps the read grant: granted, but only readable topics arrive, retained
        // ones included.
        assert_eq!(
            alice.subscribe("#", QoS::AtLeastOnce).await,
            ReasonCode::GrantedQoS1
        );
        let retained: Vec<String> = alice
            .drain()
            .await
            .iter()
            .map(|p| text(p).to_owned())
            .collect();
        assert_eq!(retained, ["a/r"], "{v:?}");
        for topic in ["b/x", "a/secret/x", "a/y"] {
            admin.publish(topic, topic, QoS::AtLeastOnce, false).await;
        }
        assert_eq!(alice.recv_until("a/y").await, ["a/y"], "{v:?}");
        // Write: granted on w/#, denied elsewhere (v5 PUBACK 0x87; 3.1.1 dropped silently).
        assert_eq!(
            admin.subscribe("+/#", QoS::AtLeastOnce).await,
            ReasonCode::GrantedQoS1
        );
        admin.drain().await;
        let (code, _) = alice.publish("w/1", "w1", QoS::AtLeastOnce, false).await;
        assert_eq!(code, Some(ReasonCode::Success));
        let (code, _) = alice.publish("b/1", "b1", QoS::AtLeastOnce, false).await;
        if v.is_v5() {
            assert_eq!(code, Some(ReasonCode::NotAuthorized));
        } else {
            assert_eq!(code, Some(ReasonCode::Success));
        }
        // Pattern with %u and %c: readable and writable for this user and client id only.
        let (code, _) = alice
            .publish("p/alice/c1/x", "p1", QoS::AtLeastOnce, false)
            .await;
        assert_eq!(code, Some(ReasonCode::Success));
        alice
            .publish("p/alice/c2/x", "p2", QoS::AtLeastOnce, false)
            .await;
        alice
            .publish("p/bob/c1/x", "p3", QoS::AtLeastOnce, false)
            .await;
        alice.publish("w/end", "end", QoS::AtLeastOnce, false).await;
        assert_eq!(admin.recv_until("end").await, ["w1", "p1", "end"], "{v:?}");
        let pid = admin.pid();
        admin
            .send(switchboard_mqtt::Packet::Unsubscribe(
                switchboard_mqtt::Unsubscribe {
                    pid,
                    filters: vec!["+/#".into()],
                    properties: Default::default(),
                },
            ))
            .await;
        admin.drain().await;
    })
    .await;
    // Anonymous clients get the section before the first `user` line: nothing here.
    gw.stop().await;
}

/// `switchboard serve` reloads the password and ACL files on SIGHUP: an open connection whose
/// login is still valid stays and gets the new rules; a broken file keeps the old rules and
/// logs the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_rules_and_keeps_connections() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = users_file(dir.path());
    let acl = write(dir.path(), "acl", "user alice\ntopic read a/#\n");
    let data = dir.path().join("data");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--www",
            dir.path().to_str().unwrap(),
            "--password-file",
            passwd.to_str().unwrap(),
            "--acl-file",
            acl.to_str().unwrap(),
        ])
        .env("SWITCHBOARD_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    // Every log line up to the first containing `needle`; the match is last.
    let mut lines_until = async |needle: &str| -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(20), async {
            let mut lines = Vec::new();
            loop {
                let line = log.next_line().await.unwrap().expect("log line");
                eprintln!("child: {line}");
                let found = line.contains(needle);
                lines.push(line);
                if found {
                    return lines;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("log line with `{needle}`"))
    };
    let line = lines_until("listening mqtt=").await.pop().unwrap();
    let addr: std::net::SocketAddr = line
        .split("listening mqtt=")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = child.id().unwrap();
    let hup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let mut alice = tcp(addr, V5).await;
    alice
        .connect(connect_packet(V5, "c1", Some("alice"), Some("alice-pw")))
        .await;
    assert_eq!(
        alice.subscribe("b/#", QoS::AtMostOnce).await,
        ReasonCode::NotAuthorized
    );

    // Anonymous clients are refused (users are configured); the log says why once per source.
    for _ in 0..3 {
        let mut anon = tcp(addr, V3_1_1).await;
        let ack = anon.connect(connect_packet(V3_1_1, "", None, None)).await;
        assert_eq!(ack.code, ReasonCode::NotAuthorized);
    }
    std::fs::write(&acl, "user alice\ntopic read a/#\ntopic read b/#\n").unwrap();
    hup();
    let lines = lines_until("security rules reloaded").await;
    let told = lines
        .iter()
        .filter(|l| l.contains("anonymous client refused"))
        .count();
    assert_eq!(told, 1, "{lines:#?}");
    assert_eq!(
        alice.subscribe("b/#", QoS::AtMostOnce).await,
        ReasonCode::Success
    );

    // A broken file: the error names the line, the old rules stay.
    std::fs::write(
        &acl,
        "user alice\ntopic read c/#\ntopic bogus\nfrobnicate\n",
    )
    .unwrap();
    hup();
    let line = lines_until("reload failed").await.pop().unwrap();
    assert!(line.contains("line 4"), "{line}");
    assert_eq!(
        alice.subscribe("b/+", QoS::AtMostOnce).await,
        ReasonCode::Success
    );
    assert_eq!(
        alice.subscribe("c/#", QoS::AtMostOnce).await,
        ReasonCode::NotAuthorized
    );

    // Users too: a removed user cannot log in any more, the open connection stays.
    std::fs::write(&acl, "user alice\ntopic read a/#\ntopic read b/#\n").unwrap();
    cli(&["passwd", passwd.to_str().unwrap(), "remove", "bob"]);
    hup();
    lines_until("security rules reloaded").await.pop().unwrap();
    let mut bob = tcp(addr, V5).await;
    let ack = bob
        .connect(connect_packet(V5, "b", Some("bob"), Some("bob-pw")))
        .await;
    assert_eq!(ack.code, ReasonCode::BadUserNameOrPassword);
    // Tokens: one created while the gateway runs works at once; revoked, it is refused after
    // the next SIGHUP and its open connection is cut (more in `revoke.rs`).
    let token = create_token(&data, &[]);
    let mut widget = tcp(addr, V5).await;
    let ack = widget
        .connect(connect_packet(V5, "", Some("token"), Some(&token)))
        .await;
    assert_eq!(ack.code, ReasonCode::Success);
    cli(&[
        "token",
        "--data-dir",
        data.to_str().unwrap(),
        "revoke",
        "kitchen-widget",
    ]);
    hup();
    lines_until("security rules reloaded").await.pop().unwrap();
    let mut again = tcp(addr, V5).await;
    let ack = again
        .connect(connect_packet(V5, "", Some("token"), Some(&token)))
        .await;
    assert_eq!(ack.code, ReasonCode::NotAuthorized);
    assert_eq!(
        widget.closed().await.map(|d| d.code),
        Some(ReasonCode::NotAuthorized)
    );
    alice.drain().await;
    child.kill().await.unwrap();
}

fn create_token(data: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "token",
        "--data-dir",
        data.to_str().unwrap(),
        "create",
        "--name",
        "kitchen-widget",
        "--publish",
        "cmnd/kitchen/POWER",
        "--subscribe",
        "stat/kitchen/#,tele/kitchen/#",
    ];
    args.extend_from_slice(extra);
    cli(&args).trim().to_owned()
}

/// Tokens grant exactly their topics, over TCP (as the password, any user name) and
/// WebSocket (`?token=`); origin-bound ones only on WebSockets from that origin; expired and
/// revoked ones are refused; an open connection ends at expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let widget = create_token(&data, &["--expires", "30d"]);
    let bound = create_token(&data, &["--origin", "https://example.org"]);
    let revoked = {
        let (claims, token) = token::create(
            &data,
            Claims {
                id: String::new(),
                name: "old".into(),
                publish: vec!["#".into()],
                subscribe: vec![],
                expires: None,
                origin: None,
                issued: 0,
            },
        )
        .unwrap();
        cli(&[
            "token",
            "--data-dir",
            data.to_str().unwrap(),
            "revoke",
            "old",
        ]);
        assert!(claims.id.len() > 8);
        token
    };
    let soon = |secs: u64| {
        token::create(
            &data,
            Claims {
                id: String::new(),
                name: "short".into(),
                publish: vec![],
                subscribe: vec!["stat/#".into()],
                expires: Some(token::unix_now() + secs),
                origin: None,
                issued: 0,
            },
        )
        .unwrap()
        .1
    };
    let expired = soon(0);
    let listing = cli(&["token", "--data-dir", data.to_str().unwrap(), "list"]);
    assert!(listing.contains("kitchen-widget"), "{listing}");
    assert!(listing.contains("revoked"), "{listing}");
    let key_mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(data.join("token.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(key_mode, 0o600);

    let gw = Gateway::start(|c| {
        quick(c);
        c.data_dir = data.clone();
        c.http.allowed_origins = vec!["https://example.org".into(), "https://evil.example".into()];
    })
    .await;
    let mut watcher = tcp(gw.mqtt, V5).await;
    watcher
        .connect(connect_packet(V5, "watch", None, None))
        .await;
    assert_eq!(
        watcher.subscribe("#", QoS::AtLeastOnce).await,
        ReasonCode::GrantedQoS1
    );

    // As the MQTT password, user name `token` or any other.
    for user in ["token", "whatever"] {
        let mut c = tcp(gw.mqtt, V5).await;
        let ack = c
            .connect(connect_packet(V5, "", Some(user), Some(&widget)))
            .await;
        assert_eq!(ack.code, ReasonCode::Success);
        let (code, _) = c
            .publish("cmnd/kitchen/POWER", "ON", QoS::AtLeastOnce, false)
            .await;
        assert_eq!(code, Some(ReasonCode::Success));
        let (code, _) = c
            .publish("cmnd/hall/POWER", "ON", QoS::AtLeastOnce, false)
            .await;
        assert_eq!(code, Some(ReasonCode::NotAuthorized));
        assert_eq!(
            c.subscribe("stat/kitchen/#", QoS::AtLeastOnce).await,
            ReasonCode::GrantedQoS1
        );
        assert_eq!(
            c.subscribe("#", QoS::AtLeastOnce).await,
            ReasonCode::NotAuthorized
        );
        assert_eq!(
            c.subscribe("stat/hall/x", QoS::AtLeastOnce).await,
            ReasonCode::NotAuthorized
        );
    }
    // The refused `cmnd/hall/POWER` (published between the two) never arrives.
    for _ in 0..2 {
        assert_eq!(watcher.recv_publish().await.topic, "cmnd/kitchen/POWER");
    }

    // `?token=` on the WebSocket URL, no credentials in CONNECT.
    let ws = gw.ws(&format!("?token={widget}"), &[]).await.unwrap();
    let mut c = Mq::new(ws, V3_1_1);
    assert_eq!(
        c.connect(connect_packet(V3_1_1, "w1", None, None))
            .await
            .code,
        ReasonCode::Success
    );
    assert_eq!(
        c.subscribe("tele/kitchen/#", QoS::AtLeastOnce).await,
        ReasonCode::GrantedQoS1
    );
    assert!(c.subscribe("tele/#", QoS::AtLeastOnce).await.is_error());

    // Origin-bound: refused over TCP and from another origin, accepted from its origin.
    let mut c = tcp(gw.mqtt, V5).await;
    let ack = c
        .connect(connect_packet(V5, "", Some("token"), Some(&bound)))
        .await;
    assert_eq!(ack.code, ReasonCode::NotAuthorized);
    let ws = gw
        .ws(
            &format!("?token={bound}"),
            &[("origin", "https://evil.example")],
        )
        .await
        .unwrap();
    let mut c = Mq::new(ws, V5);
    assert_eq!(
        c.connect(connect_packet(V5, "", None, None)).await.code,
        ReasonCode::NotAuthorized
    );
    let ws = gw
        .ws(
            &format!("?token={bound}"),
            &[("origin", "https://example.org")],
        )
        .await
        .unwrap();
    let mut c = Mq::new(ws, V5);
    assert_eq!(
        c.connect(connect_packet(V5, "", None, None)).await.code,
        ReasonCode::Success
    );

    // Revoked, expired, forged.
    for (token, code) in [
        (revoked.as_str(), ReasonCode::NotAuthorized),
        (expired.as_str(), ReasonCode::NotAuthorized),
        (
            &widget[..widget.len() - 2],
            ReasonCode::BadUserNameOrPassword,
        ),
    ] {
        let mut c = tcp(gw.mqtt, V5).await;
        let ack = c
            .connect(connect_packet(V5, "", Some("token"), Some(token)))
            .await;
        assert_eq!(ack.code, code);
    }

    // An open connection is closed when its token expires (v5: DISCONNECT 0x87).
    let short = soon(2);
    let mut c = tcp(gw.mqtt, V5).await;
    let ack = c
        .connect(connect_packet(V5, "", Some("token"), Some(&short)))
        .await;
    assert_eq!(ack.code, ReasonCode::Success);
    let started = Instant::now();
    let goodbye = c.closed().await.expect("DISCONNECT at expiry");
    assert_eq!(goodbye.code, ReasonCode::NotAuthorized);
    assert!(started.elapsed() < TIMEOUT);
    gw.stop().await;
}

/// `max_connections_per_address`: connections beyond it are closed at once, without CONNACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_connection_limit() {
    let gw = Gateway::start(|c| {
        quick(c);
        c.limits.max_connections_per_address = 3;
    })
    .await;
    let mut open = Vec::new();
    for i in 0..3 {
        let mut c = tcp(gw.mqtt, V5).await;
        c.connect(connect_packet(V5, &format!("c{i}"), None, None))
            .await;
        open.push(c);
    }
    let mut extra = tcp(gw.mqtt, V5).await;
    assert_eq!(
        extra.try_connect(connect_packet(V5, "x", None, None)).await,
        None
    );
    // WebSockets count against the same address.
    let ws = gw.ws("", &[]).await.unwrap();
    let mut extra = Mq::new(ws, V5);
    assert_eq!(
        extra.try_connect(connect_packet(V5, "y", None, None)).await,
        None
    );
    for c in &mut open {
        c.drain().await;
    }
    gw.stop().await;
}

/// `max_handshakes`: connections that have not finished CONNECT are limited; one beyond the
/// limit is closed at once, and the waiting ones still complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_limit() {
    use tokio::io::AsyncReadExt as _;
    let gw = Gateway::start(|c| {
        quick(c);
        c.limits.max_handshakes = 2;
    })
    .await;
    // Three half CONNECTs: two hold the handshake slots, one is closed at once (which one
    // depends on scheduling).
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = tcp(gw.mqtt, V5).await;
        c.send_bytes(&[0x10]).await;
        clients.push(c);
    }
    let cut = {
        let [a, b, c] = &mut clients[..] else {
            unreachable!()
        };
        let (mut x, mut y, mut z) = ([0u8; 8], [0u8; 8], [0u8; 8]);
        let first = tokio::time::timeout(TIMEOUT, async {
            tokio::select! {
                r = a.io.read(&mut x) => (0, r),
                r = b.io.read(&mut y) => (1, r),
                r = c.io.read(&mut z) => (2, r),
            }
        })
        .await
        .expect("one connection cut off");
        assert!(matches!(first.1, Ok(0) | Err(_)), "{first:?}");
        first.0
    };
    for (i, client) in clients.iter_mut().enumerate() {
        if i == cut {
            continue;
        }
        let mut bytes = switchboard_mqtt::BytesMut::new();
        switchboard_mqtt::Packet::Connect(Box::new(connect_packet(
            V5,
            &format!("h{i}"),
            None,
            None,
        )))
        .encode(V5, &mut bytes)
        .unwrap();
        client.send_bytes(&bytes[1..]).await;
        match client.recv().await {
            switchboard_mqtt::Packet::ConnAck(ack) => assert_eq!(ack.code, ReasonCode::Success),
            other => panic!("{other:?}"),
        }
    }
    gw.stop().await;
}

/// One address cannot hold every handshake slot: it gets at most three quarters of
/// `max_handshakes`, so a client from another address still connects while it holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_handshake_slot() {
    use tokio::io::AsyncWriteExt as _;
    let gw = Gateway::start(|c| {
        quick(c);
        c.limits.max_handshakes = 8;
    })
    .await;
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let mqtt = gw.mqtt;
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(std::net::SocketAddr::new(ip, 0)).unwrap();
            socket.connect(mqtt).await.unwrap()
        }
    };
    // Eight silent half CONNECTs from 127.0.0.2; the server holds six of them.
    let mut silent = Vec::new();
    for _ in 0..8 {
        let mut s = from("127.0.0.2").await;
        s.write_all(&[0x10]).await.unwrap();
        silent.push(s);
    }
    let mut cut = 0;
    // Wait until the gateway has handled all eight (two of them closed at once).
    for s in &mut silent {
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::io::AsyncReadExt::read(s, &mut b),
        )
        .await
        {
            cut += 1;
        }
    }
    assert_eq!(cut, 2, "two of eight from one address cut");
    // A client from 127.0.0.3 still gets its CONNACK.
    let mut legit = Mq::new(from("127.0.0.3").await, V5);
    legit.connect(connect_packet(V5, "legit", None, None)).await;
    drop(silent);
    gw.stop().await;
}

/// Subscription amplification: one SUBSCRIBE carrying the same filter 2,000 times is applied
/// once (the last replaces the earlier, [MQTT-3.8.4-3]), so 100 retained messages are sent once,
/// not 200,000 times; `[limits] max_subscriptions` caps the filters a session holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_filters_are_merged_and_subscriptions_capped() {
    let gw = Gateway::start(|c| {
        quick(c);
        c.limits.max_subscriptions = 3;
    })
    .await;
    let mut publisher = tcp(gw.mqtt, V5).await;
    publisher
        .connect(connect_packet(V5, "amp-pub", None, None))
        .await;
    for n in 0..100 {
        publisher
            .publish(&format!("amp/{n}"), "r", QoS::AtLeastOnce, true)
            .await;
    }
    let mut sub = tcp(gw.mqtt, V5).await;
    sub.connect(connect_packet(V5, "amp-sub", None, None)).await;
    let pid = sub.pid();
    sub.send(switchboard_mqtt::Packet::Subscribe(
        switchboard_mqtt::Subscribe {
            pid,
            filters: vec![
                (
                    "amp/#".into(),
                    switchboard_mqtt::SubscriptionOptions::qos(QoS::AtMostOnce)
                );
                2000
            ],
            properties: Default::default(),
        },
    ))
    .await;
    match sub.recv().await {
        switchboard_mqtt::Packet::SubAck(ack) => {
            assert_eq!(ack.codes.len(), 2000);
            assert!(ack.codes.iter().all(|c| *c == ReasonCode::Success));
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
    // Published after the SUBSCRIBE was handled: comes after every retained message.
    publisher
        .publish("amp/end", "end", QoS::AtLeastOnce, false)
        .await;
    let seen = sub.recv_until("end").await;
    assert_eq!(
        seen.len(),
        101,
        "retained messages sent once each, then the marker"
    );

    // Two more filters fit (3 in all); a fourth is refused; replacing one still works.
    assert_eq!(
        sub.subscribe("cap/a", QoS::AtMostOnce).await,
        ReasonCode::Success
    );
    assert_eq!(
        sub.subscribe("cap/b", QoS::AtMostOnce).await,
        ReasonCode::Success
    );
    assert_eq!(
        sub.subscribe("cap/c", QoS::AtMostOnce).await,
        ReasonCode::QuotaExceeded
    );
    assert_eq!(
        sub.subscribe("cap/a", QoS::AtLeastOnce).await,
        ReasonCode::GrantedQoS1
    );
    gw.stop().await;
}

/// `publish_rate`: a client publishing faster than the rate (beyond the burst) is
/// disconnected: v5 DISCONNECT 0x96, 3.1.1 closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rate_limit() {
    let gw = Gateway::start(|c| {
        quick(c);
        c.limits.publish_rate = 5;
        c.limits.publish_burst = 10;
    })
    .await;
    both(async |v| {
        let mut c = tcp(gw.mqtt, v).await;
        c.connect(connect_packet(v, "fast", None, None)).await;
        // Within the burst: fine.
        for i in 0..5 {
            c.publish("t", &i.to_string(), QoS::AtLeastOnce, false)
                .await;
        }
        let mut bytes = switchboard_mqtt::BytesMut::new();
        for _ in 0..100 {
            switchboard_mqtt::Packet::Publish(switchboard_mqtt::Publish::new("t", b"x".to_vec()))
                .encode(v, &mut bytes)
                .unwrap();
        }
        let _ = c.try_send_bytes(&bytes).await;
        let goodbye = c.closed().await;
        if v.is_v5() {
            assert_eq!(
                goodbye.expect("DISCONNECT").code,
                ReasonCode::MessageRateTooHigh
            );
        } else {
            assert!(goodbye.is_none());
        }
    })
    .await;
    gw.stop().await;
}

/// After failed logins of a user name from one address, its next attempt waits longer each time
/// (exponential, capped) before the password is even checked. The attacker's own account
/// logging in from the same address does not reset it; the user's own success does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_back_off() {
    let dir = tempfile::tempdir().unwrap();
    // Mosquitto `$6$` (fast to verify) so the delays measured are the back-off's.
    let bob = "$6$zlzhxvLVJg4DMQnj$Rfm/VBPqj8E9dptR5C8fUl1FBm9BSF5/W9XnEG2S+t87FJDEmoHJ5HxQo8/APA3SHRZ/4Zf8IhacJYepp+ZEDQ==";
    let passwd = write(dir.path(), "passwd", &format!("bob:{bob}\nmallory:{bob}\n"));
    let gw = Gateway::start(|c| {
        c.security.password_file = Some(passwd.clone());
        c.limits.login_backoff_ms = 100;
        c.limits.login_backoff_max_ms = 400;
    })
    .await;
    let attempt = async |user: &str, pw: &str| {
        let mut c = tcp(gw.mqtt, V5).await;
        let started = Instant::now();
        let ack = c
            .connect(connect_packet(V5, user, Some(user), Some(pw)))
            .await;
        (ack.code, started.elapsed())
    };
    let mut delays = Vec::new();
    for _ in 0..5 {
        let (code, took) = attempt("bob", "wrong").await;
        assert_eq!(code, ReasonCode::BadUserNameOrPassword);
        delays.push(took);
    }
    let ms = |d: Duration| d.as_millis();
    assert!(
        ms(delays[0]) < 100,
        "the first is checked at once: {delays:?}"
    );
    assert!(ms(delays[1]) >= 100, "{delays:?}");
    assert!(ms(delays[2]) >= 200, "{delays:?}");
    assert!(ms(delays[3]) >= 400, "{delays:?}");
    assert!(
        ms(delays[4]) >= 400 && ms(delays[4]) < 2000,
        "capped: {delays:?}"
    );
    // Another name from the same address is not held, and its success frees only itself.
    let (code, took) = attempt("mallory", "pw2").await;
    assert_eq!(code, ReasonCode::Success);
    assert!(ms(took) < 100, "another user is not delayed: {took:?}");
    let (code, took) = attempt("bob", "wrong").await;
    assert_eq!(code, ReasonCode::BadUserNameOrPassword);
    assert!(
        ms(took) >= 300,
        "mallory's login did not reset bob's back-off: {took:?}"
    );
    // bob's own correct password still waits out the back-off, then clears it.
    let (code, took) = attempt("bob", "pw2").await;
    assert_eq!(code, ReasonCode::Success);
    assert!(ms(took) >= 300, "waited out the back-off: {took:?}");
    let (_, took) = attempt("bob", "wrong").await;
    assert!(ms(took) < 100, "reset by bob's success: {took:?}");
    gw.stop().await;
}

/// The highest resident set size of this process so far (nextest runs each test in its own
/// process), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// 200 wrong argon2id passwords sent at once from one address: the checks take turns (memory
/// stays bounded: each argon2id check takes 19 MiB), most guesses are refused with 0x9F without
/// being checked, and a correct login from another address is not starved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_password_guesses_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = users_file(dir.path());
    let gw = Gateway::start(|c| {
        c.security.password_file = Some(passwd.clone());
        c.broker.connect_timeout = 3;
    })
    .await;
    let before = peak_rss();
    let mut guesses = Vec::new();
    for i in 0..200 {
        let addr = gw.mqtt;
        guesses.push(tokio::spawn(async move {
            let mut c = tcp(addr, V5).await;
            c.try_connect(connect_packet(
                V5,
                &format!("g{i}"),
                Some("alice"),
                Some("guess"),
            ))
            .await
        }));
    }
    // A household member on another address logs in while the guesses are queued.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(gw.mqtt).await.unwrap();
    let mut member = Mq::new(stream, V5);
    let ack = member
        .connect(connect_packet(
            V5,
            "member",
            Some("alice"),
            Some("alice-pw"),
        ))
        .await;
    let member_took = started.elapsed();
    assert_eq!(ack.code, ReasonCode::Success);
    let mut checked = 0;
    let mut busy = 0;
    for g in guesses {
        match g.await.unwrap() {
            Some(ReasonCode::BadUserNameOrPassword) => checked += 1,
            Some(ReasonCode::ConnectionRateExceeded) => busy += 1,
            other => panic!("a guess got {other:?}"),
        }
    }
    let grew = peak_rss().saturating_sub(before);
    println!(
        "200 parallel guesses: {checked} checked, {busy} refused unchecked; \
         correct login from another address took {member_took:?}; peak RSS grew {} MiB",
        grew >> 20
    );
    assert_eq!(checked + busy, 200);
    assert!(
        checked <= 8,
        "the back-off spaces one address's checks: {checked} checked"
    );
    assert!(grew < 200 << 20, "peak RSS grew {} MiB", grew >> 20);
    assert!(member_took < TIMEOUT, "correct login took {member_took:?}");
    gw.stop().await;
}

/// Runs the `switchboard` binary with `input` on a piped standard input; its exit status.
fn cli_piped(args: &[&str], input: &str) -> std::process::ExitStatus {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run switchboard");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait().unwrap()
}

/// Not on a terminal (scripts, pipes): `passwd add` and `passwd-scram add` read one line from
/// standard input, without asking again.
#[test]
fn piped_passwords_are_one_line_of_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let file = passwd.to_str().unwrap();
    assert!(cli_piped(&["passwd", file, "add", "dave"], "dave pw\r\n").success());
    let users = switchboard::security::PasswordFile::load(&passwd).unwrap();
    assert!(users.verify("dave", b"dave pw"));
    // An empty line is no password.
    assert!(!cli_piped(&["passwd", file, "add", "erin"], "\n").success());
    assert!(
        switchboard::security::PasswordFile::load(&passwd)
            .unwrap()
            .get("erin")
            .is_none()
    );

    let scram = dir.path().join("scram");
    let file = scram.to_str().unwrap();
    assert!(cli_piped(&["passwd-scram", file, "add", "dave"], "dave pw\n").success());
    let credentials = switchboard::scram::Credentials::load(&scram).unwrap();
    assert!(credentials.get("dave").is_some());
}

/// What a terminal showed while `switchboard ARGS` ran on it, with `typed` entered at each
/// password prompt (after the prompt turned echo off), and the exit status.
///
/// The terminal is a pseudo-terminal made the child's controlling terminal (`setsid -c`), as a
/// login shell's is.
fn on_terminal(args: &[&str], typed: &[&str]) -> (std::process::ExitStatus, String) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use rustix::termios::{LocalModes, tcgetattr};
    use std::io::{Read as _, Write as _};
    use std::sync::mpsc;

    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let mut child = std::process::Command::new("setsid")
        .arg("-c")
        .arg(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .stdin(terminal.try_clone().unwrap())
        .stdout(terminal.try_clone().unwrap())
        .stderr(terminal.try_clone().unwrap())
        .spawn()
        .expect("setsid (util-linux)");
    let mut master = std::fs::File::from(master);
    let mut reader = master.try_clone().unwrap();
    // Everything the terminal shows; ends (EIO) once no process holds the terminal.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut shown = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let left = || deadline.saturating_duration_since(Instant::now());
    for (i, line) in typed.iter().enumerate() {
        while shown.matches("Password for").count() <= i {
            let bytes = rx
                .recv_timeout(left())
                .unwrap_or_else(|_| panic!("prompt {} not shown: {shown:?}", i + 1));
            shown.push_str(&String::from_utf8_lossy(&bytes));
        }
        // The prompt is written just before echo goes off: wait for the terminal state (no
        // event tells it), bounded.
        while tcgetattr(&terminal)
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO)
        {
            assert!(!left().is_zero(), "echo never turned off: {shown:?}");
            std::thread::yield_now();
        }
        master.write_all(format!("{line}\r").as_bytes()).unwrap();
    }
    drop(terminal);
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(left())
        .expect("switchboard exits in time")
        .unwrap();
    while let Ok(bytes) = rx.recv_timeout(left()) {
        shown.push_str(&String::from_utf8_lossy(&bytes));
    }
    (status, shown)
}

/// On a terminal, `passwd add` and `passwd-scram add` ask for the password twice without
/// echoing it; two different entries change nothing.
#[test]
fn terminal_password_prompts_do_not_echo() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let file = passwd.to_str().unwrap();
    let (status, shown) = on_terminal(&["passwd", file, "add", "frank"], &["s3cret-1", "s3cret-1"]);
    assert!(status.success(), "{shown}");
    assert!(!shown.contains("s3cret"), "echoed: {shown:?}");
    assert_eq!(shown.matches("Password for frank").count(), 2, "{shown:?}");
    let users = switchboard::security::PasswordFile::load(&passwd).unwrap();
    assert!(users.verify("frank", b"s3cret-1"));

    let (status, shown) = on_terminal(&["passwd", file, "add", "grace"], &["s3cret-2", "s3cret-3"]);
    assert!(!status.success(), "{shown}");
    assert!(shown.contains("differ"), "{shown:?}");
    assert!(!shown.contains("s3cret"), "echoed: {shown:?}");
    let users = switchboard::security::PasswordFile::load(&passwd).unwrap();
    assert!(users.get("grace").is_none());

    let scram = dir.path().join("scram");
    let file = scram.to_str().unwrap();
    let (status, shown) = on_terminal(
        &["passwd-scram", file, "add", "frank"],
        &["s3cret-4", "s3cret-4"],
    );
    assert!(status.success(), "{shown}");
    assert!(!shown.contains("s3cret"), "echoed: {shown:?}");
    let credentials = switchboard::scram::Credentials::load(&scram).unwrap();
    assert!(credentials.get("frank").is_some());
}

/// Behind a trusted loopback proxy only the hop the proxy appended counts: a client's own
/// `Forwarded: for=127.0.0.1` (or `for=unknown`) next to the proxy's `X-Forwarded-For` does not
/// make it loopback (anonymous refused, 0x87), and the keyless API refuses it too; a genuine
/// loopback request without forwarding headers still gets both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_headers_are_not_loopback() {
    let gw = Gateway::start(|c| {
        quick(c);
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    for spoof in ["for=127.0.0.1", "for=unknown"] {
        let ws = gw
            .ws(
                "",
                &[("forwarded", spoof), ("x-forwarded-for", "203.0.113.7")],
            )
            .await
            .unwrap();
        let mut remote = Mq::new(ws, V5);
        let ack = remote
            .connect(connect_packet(V5, "spoof", None, None))
            .await;
        assert_eq!(ack.code, ReasonCode::NotAuthorized, "{spoof}");
    }
    let ws = gw.ws("", &[]).await.unwrap();
    let mut local = Mq::new(ws, V5);
    assert_eq!(
        local.connect(connect_packet(V5, "", None, None)).await.code,
        ReasonCode::Success
    );
    let get = async |extra: &str| -> String {
        let s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
        http_get(s, "/api/v1/clients", extra).await
    };
    let proxied = get("X-Forwarded-For: 203.0.113.7\r\n").await;
    assert!(proxied.starts_with("HTTP/1.1 403"), "{proxied}");
    let spoofed = get("Forwarded: for=127.0.0.1\r\nX-Forwarded-For: 203.0.113.7\r\n").await;
    assert!(spoofed.starts_with("HTTP/1.1 403"), "{spoofed}");
    let direct = get("").await;
    assert!(direct.starts_with("HTTP/1.1 200"), "{direct}");
    gw.stop().await;
}

/// A real nginx on loopback in front of the gateway, as a household would put one for TLS.
/// It takes the client's address from the PROXY protocol (as it does behind a load balancer),
/// so a test client can stand for one on another network without sending traffic anywhere:
/// nginx itself writes `X-Forwarded-For`, appending that address to whatever the client sent.
struct Nginx {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(upstream: std::net::SocketAddr) -> Self {
        let nginx = Path::new("/usr/sbin/nginx");
        assert!(
            nginx.exists(),
            "nginx is missing: run `cargo xtask setup` (Debian package `nginx-light`)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let conf = format!(
            "master_process off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{}}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
               server {{\n\
                 listen 127.0.0.1:{port} proxy_protocol;\n\
                 set_real_ip_from 127.0.0.1;\n\
                 real_ip_header proxy_protocol;\n\
                 location / {{\n\
                   proxy_pass http://{upstream};\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Host $host;\n\
                   proxy_set_header Upgrade $http_upgrade;\n\
                   proxy_set_header Connection $connection_upgrade;\n\
                   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                 }}\n\
               }}\n\
             }}\n"
        );
        let path = write(dir.path(), "nginx.conf", &conf);
        let child = std::process::Command::new(nginx)
            .args(["-p", &d.to_string(), "-c"])
            .arg(&path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    /// A connection through nginx from `client` (what the PROXY header says).
    async fn connect(&self, client: &str) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt as _;
        let deadline = Instant::now() + TIMEOUT;
        let mut stream = loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("nginx is not listening: {e}"),
            }
        };
        let family = if client.contains(':') { "TCP6" } else { "TCP4" };
        let local = if client.contains(':') {
            "::1"
        } else {
            "127.0.0.1"
        };
        let header = format!("PROXY {family} {client} {local} 40000 {}\r\n", self.port);
        stream.write_all(header.as_bytes()).await.unwrap();
        stream
    }

    /// An HTTP GET of `path` through nginx from `client`: status line and body.
    async fn get(&self, client: &str, path: &str, extra: &str) -> String {
        http_get(self.connect(client).await, path, extra).await
    }

    /// An MQTT WebSocket through nginx from `client` with extra request headers; the CONNACK
    /// code of an anonymous CONNECT.
    async fn anonymous_ws(&self, client: &str, headers: &[(&str, &str)]) -> ReasonCode {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let stream = self.connect(client).await;
        let mut request = format!("ws://localhost:{}/mqtt", self.port)
            .into_client_request()
            .unwrap();
        let h = request.headers_mut();
        h.insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        for (name, value) in headers {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (ws, _) =
            tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, stream))
                .await
                .expect("handshake in time")
                .expect("upgraded through nginx");
        let mut c = Mq::new(switchboard::ws::WsByteStream::new(ws), V5);
        c.connect(connect_packet(V5, "", None, None)).await.code
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Through a real reverse proxy (nginx appending the client's address to `X-Forwarded-For`),
/// the gateway sees the client nginx saw, for MQTT over WebSocket and for the API alike, and
/// nothing the client wrote itself makes it loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_the_client_is_the_one_nginx_saw() {
    let gw = Gateway::start(|c| {
        quick(c);
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let nginx = Nginx::start(gw.http);
    let remote = "203.0.113.7";
    // A client on another network: anonymous access is refused however it dresses up.
    for headers in [
        &[][..],
        &[("forwarded", "for=127.0.0.1")][..],
        &[("forwarded", "for=unknown")][..],
        &[("x-forwarded-for", "127.0.0.1")][..],
        &[("x-real-ip", "127.0.0.1")][..],
    ] {
        assert_eq!(
            nginx.anonymous_ws(remote, headers).await,
            ReasonCode::NotAuthorized,
            "{headers:?}"
        );
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let api = nginx.get(remote, "/api/v1/clients", &extra).await;
        assert!(api.starts_with("HTTP/1.1 403"), "{headers:?}: {api}");
    }
    // A client on the gateway's own machine, through the same proxy, is loopback.
    assert_eq!(
        nginx.anonymous_ws("127.0.0.1", &[]).await,
        ReasonCode::Success
    );
    let api = nginx.get("127.0.0.1", "/api/v1/clients", "").await;
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    gw.stop().await;
}

/// A `GET path` for `Host: localhost` over `stream` with extra header lines (each ending in
/// `\r\n`); the whole response.
async fn http_get(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    path: &str,
    extra: &str,
) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}
