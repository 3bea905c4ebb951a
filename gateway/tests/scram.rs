//! MQTT 5 enhanced authentication with SCRAM-SHA-256, over real sockets with raw packets. The
//! client side is computed here from RFC 5802 (independently of `switchboard::scram`).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use switchboard_mqtt::{Auth, Bytes, Connect, Packet, ReasonCode};

use common::{Client, TIMEOUT, V3_1_1, V5, harness};

const METHOD: &str = "SCRAM-SHA-256";

struct Gateway {
    addr: std::net::SocketAddr,
    scram_file: std::path::PathBuf,
    running: harness::Running,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// A gateway whose SCRAM file has `plug`/`s3cret` (and `with:colon` is impossible).
    async fn start(scram: bool) -> Self {
        let users: &[(&str, &str)] = if scram { &[("plug", "s3cret")] } else { &[] };
        Self::with_users(users).await
    }

    /// A gateway with these SCRAM users (none: no SCRAM file).
    async fn with_users(users: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let scram_file = dir.path().join("scram");
        let mut config = harness::loopback(&dir.path().join("data"));
        config.listeners.http = Vec::new();
        for (user, password) in users {
            switchboard::scram::add_user(&scram_file, user, password).unwrap();
        }
        if !users.is_empty() {
            config.scram.file = Some(scram_file.clone());
        }
        let running = harness::Running::start(config, switchboard::RunOptions::default()).await;
        Self {
            addr: running.bound.mqtt[0],
            scram_file,
            running,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 5802 section 3, client side: (client-final-message, expected server-final-message).
fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> (String, String) {
    let attrs: std::collections::HashMap<&str, &str> = server_first
        .split(',')
        .filter_map(|a| a.split_once('='))
        .collect();
    let nonce = attrs["r"];
    let salt = B64.decode(attrs["s"]).unwrap();
    let iterations: u32 = attrs["i"].parse().unwrap();
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = hmac(&salted, b"Server Key");
    let server_signature = hmac(&server_key, auth_message.as_bytes());
    (
        format!("{without_proof},p={}", B64.encode(proof)),
        format!("v={}", B64.encode(server_signature)),
    )
}

fn scram_connect(client_id: &str, method: &str, data: &str) -> Connect {
    let mut connect = Connect::new(V5, client_id);
    connect.properties.authentication_method = Some(method.into());
    connect.properties.authentication_data = Some(Bytes::copy_from_slice(data.as_bytes()));
    connect
}

fn auth_continue(data: &str) -> Packet {
    let mut auth = Auth {
        code: ReasonCode::ContinueAuthentication,
        ..Auth::default()
    };
    auth.properties.authentication_method = Some(METHOD.into());
    auth.properties.authentication_data = Some(Bytes::copy_from_slice(data.as_bytes()));
    Packet::Auth(auth)
}

/// Sends CONNECT with the client-first-message and returns the client and the server-first.
async fn begin(addr: std::net::SocketAddr, user: &str, nonce: &str) -> (Client, String, String) {
    let bare = format!("n={user},r={nonce}");
    let mut client = Client::raw(addr, V5).await;
    client
        .send(Packet::Connect(Box::new(scram_connect(
            "scram-client",
            METHOD,
            &format!("n,,{bare}"),
        ))))
        .await;
    let Packet::Auth(auth) = client.recv().await else {
        panic!("expected AUTH")
    };
    assert_eq!(auth.code, ReasonCode::ContinueAuthentication);
    assert_eq!(
        auth.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    let server_first =
        String::from_utf8(auth.properties.authentication_data.unwrap().to_vec()).unwrap();
    assert!(
        server_first.starts_with(&format!("r={nonce}")),
        "{server_first}"
    );
    (client, bare, server_first)
}

async fn connack(client: &mut Client) -> switchboard_mqtt::ConnAck {
    match client.recv().await {
        Packet::ConnAck(ack) => ack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn full_exchange_succeeds_and_the_server_proves_itself() {
    let gw = Gateway::start(true).await;
    let (mut client, bare, server_first) = begin(gw.addr, "plug", "fyko+d2lbbFgONRv9qkxdawL").await;
    let (final_msg, expected) = client_final("s3cret", &bare, &server_first);
    client.send(auth_continue(&final_msg)).await;
    let ack = connack(&mut client).await;
    assert_eq!(ack.code, ReasonCode::Success, "{ack:?}");
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    let server_final = ack.properties.authentication_data.expect("server-final");
    assert_eq!(&server_final[..], expected.as_bytes(), "server signature");
    // The session works after authentication.
    client
        .subscribe("scram/t", switchboard_mqtt::QoS::AtLeastOnce)
        .await;
    client
        .publish("scram/t", "hi", switchboard_mqtt::QoS::AtLeastOnce, false)
        .await;
    assert_eq!(common::text(&client.recv_and_ack().await), "hi");
    client.disconnect().await;
    gw.stop().await;
}

#[tokio::test]
async fn clients_without_enhanced_authentication_still_connect() {
    let gw = Gateway::start(true).await;
    Client::connect(gw.addr, V3_1_1, "legacy")
        .await
        .disconnect()
        .await;
    Client::connect(gw.addr, V5, "plain-v5")
        .await
        .disconnect()
        .await;
    gw.stop().await;
}

#[tokio::test]
async fn wrong_password_gets_0x86() {
    let gw = Gateway::start(true).await;
    let (mut client, bare, server_first) = begin(gw.addr, "plug", "abcdefgh").await;
    let (final_msg, _) = client_final("wrong", &bare, &server_first);
    client.send(auth_continue(&final_msg)).await;
    assert_eq!(
        connack(&mut client).await.code,
        ReasonCode::BadUserNameOrPassword
    );
    assert!(client.closed().await.is_none());
    gw.stop().await;
}

#[tokio::test]
async fn unknown_user_gets_0x86_after_a_normal_looking_exchange() {
    let gw = Gateway::start(true).await;
    let (mut client, bare, server_first) = begin(gw.addr, "nobody", "abcdefgh").await;
    let (final_msg, _) = client_final("s3cret", &bare, &server_first);
    client.send(auth_continue(&final_msg)).await;
    assert_eq!(
        connack(&mut client).await.code,
        ReasonCode::BadUserNameOrPassword
    );
    gw.stop().await;
}

#[tokio::test]
async fn unknown_method_gets_0x8c() {
    let gw = Gateway::start(true).await;
    let (_client, ack) = Client::connect_with(
        gw.addr,
        scram_connect("c", "SCRAM-SHA-1", "n,,n=plug,r=abc"),
    )
    .await;
    assert_eq!(ack.code, ReasonCode::BadAuthenticationMethod);
    gw.stop().await;
}

#[tokio::test]
async fn scram_without_a_credential_file_gets_0x8c() {
    let gw = Gateway::start(false).await;
    let (_client, ack) =
        Client::connect_with(gw.addr, scram_connect("c", METHOD, "n,,n=plug,r=abc")).await;
    assert_eq!(ack.code, ReasonCode::BadAuthenticationMethod);
    gw.stop().await;
}

#[tokio::test]
async fn replayed_client_final_fails() {
    let gw = Gateway::start(true).await;
    let nonce = "replay-nonce";
    let (mut first, bare, server_first) = begin(gw.addr, "plug", nonce).await;
    let (final_msg, _) = client_final("s3cret", &bare, &server_first);
    first.send(auth_continue(&final_msg)).await;
    assert_eq!(connack(&mut first).await.code, ReasonCode::Success);
    first.disconnect().await;

    // Same client nonce, fresh server nonce: the recorded client-final no longer matches.
    let (mut second, _, server_first_2) = begin(gw.addr, "plug", nonce).await;
    assert_ne!(server_first, server_first_2);
    second.send(auth_continue(&final_msg)).await;
    let code = connack(&mut second).await.code;
    assert!(code.is_error(), "{code:?}");
    gw.stop().await;
}

#[tokio::test]
async fn garbled_client_final_fails() {
    let gw = Gateway::start(true).await;
    let (mut client, _, _) = begin(gw.addr, "plug", "garble").await;
    client.send(auth_continue("c=biws,r=nonsense")).await;
    assert_eq!(connack(&mut client).await.code, ReasonCode::NotAuthorized);

    let (mut client, _, _) = begin(gw.addr, "plug", "garble2").await;
    // Not an AUTH packet during the exchange: protocol error.
    client.send(Packet::PingReq).await;
    assert_eq!(connack(&mut client).await.code, ReasonCode::ProtocolError);
    gw.stop().await;
}

#[tokio::test]
async fn sighup_reloads_the_credential_file() {
    let gw = Gateway::start(true).await;
    switchboard::scram::add_user(&gw.scram_file, "newcomer", "hello").unwrap();
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP).unwrap();
    // Reloading is asynchronous: try until the new user is known (bounded).
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (mut client, bare, server_first) = begin(gw.addr, "newcomer", "reload").await;
        let (final_msg, _) = client_final("hello", &bare, &server_first);
        client.send(auth_continue(&final_msg)).await;
        if connack(&mut client).await.code == ReasonCode::Success {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not reloaded");
    }
    gw.stop().await;
}

/// Drives the sans-I/O client state machine over TCP until it reports `Connected` or `Close`.
async fn state_machine_connect(
    addr: std::net::SocketAddr,
    auth: switchboard::scram::ScramClient,
) -> Result<(), switchboard_mqtt::client::CloseReason> {
    use std::time::Duration;
    use switchboard_mqtt::client::{Action, ClientState};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut state =
        ClientState::new(Connect::new(V5, "state-machine")).with_enhanced_auth(Box::new(auth));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut decoder = switchboard_mqtt::Decoder::new(u32::MAX);
    decoder.set_version(V5);
    let mut buf = switchboard_mqtt::BytesMut::new();
    state.handle_connected(Duration::ZERO);
    tokio::time::timeout(TIMEOUT, async {
        loop {
            while let Some(action) = state.poll_action() {
                match action {
                    Action::Send(packet) => {
                        let mut out = switchboard_mqtt::BytesMut::new();
                        packet.encode(V5, &mut out).unwrap();
                        stream.write_all(&out).await.unwrap();
                    }
                    Action::Connected { .. } => return Ok(()),
                    Action::Close { reason } => return Err(reason),
                    _ => {}
                }
            }
            let mut handled = false;
            while let Some(packet) = decoder.decode(&mut buf).unwrap() {
                state.handle_packet(packet, Duration::ZERO);
                handled = true;
            }
            if !handled {
                assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed");
            }
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_client_state_machine_authenticates_with_scram() {
    let gw = Gateway::start(true).await;
    let ok = state_machine_connect(gw.addr, switchboard::scram::client("plug", "s3cret"));
    assert_eq!(ok.await, Ok(()));
    let refused = state_machine_connect(gw.addr, switchboard::scram::client("plug", "wrong"));
    assert_eq!(
        refused.await,
        Err(switchboard_mqtt::client::CloseReason::Refused(
            ReasonCode::BadUserNameOrPassword
        ))
    );
    gw.stop().await;
}

/// A full SCRAM login as `user` with client id `client_id`.
async fn scram_login(
    addr: std::net::SocketAddr,
    client_id: &str,
    user: &str,
    password: &str,
) -> Client {
    let nonce = format!("nonce-{client_id}");
    let bare = format!("n={user},r={nonce}");
    let mut client = Client::raw(addr, V5).await;
    client
        .send(Packet::Connect(Box::new(scram_connect(
            client_id,
            METHOD,
            &format!("n,,{bare}"),
        ))))
        .await;
    let Packet::Auth(auth) = client.recv().await else {
        panic!("expected AUTH")
    };
    let server_first =
        String::from_utf8(auth.properties.authentication_data.unwrap().to_vec()).unwrap();
    let (final_msg, _) = client_final(password, &bare, &server_first);
    client.send(auth_continue(&final_msg)).await;
    assert_eq!(connack(&mut client).await.code, ReasonCode::Success);
    client
}

#[tokio::test]
/// A SIGHUP that reloads a SCRAM credential file without a user cuts that user's open
/// connection (v5: DISCONNECT 0x87); a user whose credential did not change stays connected.
async fn a_user_removed_from_the_scram_file_is_cut_on_reload() {
    let gw = Gateway::with_users(&[("plug", "s3cret"), ("lamp", "l4mp")]).await;
    let mut plug = scram_login(gw.addr, "plug-conn", "plug", "s3cret").await;
    let mut lamp = scram_login(gw.addr, "lamp-conn", "lamp", "l4mp").await;

    // The new file drops plug and keeps lamp's line as it is (`add_user` would salt afresh).
    let current = std::fs::read_to_string(&gw.scram_file).unwrap();
    let lamp_line = current.lines().find(|l| l.starts_with("lamp:")).unwrap();
    let other = gw.scram_file.with_file_name("scram.new");
    std::fs::write(&other, format!("{lamp_line}\n")).unwrap();
    std::fs::rename(&other, &gw.scram_file).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let disconnect = plug.closed().await.expect("DISCONNECT");
    assert_eq!(disconnect.code, ReasonCode::NotAuthorized);
    lamp.ping().await;
    lamp.disconnect().await;
    gw.stop().await;
}
