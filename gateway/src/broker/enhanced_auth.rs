//! MQTT 5 enhanced authentication (section 4.12): the AUTH exchange between CONNECT and
//! CONNACK, and the identity a TLS client certificate proves.
//!
//! Flow for SCRAM-SHA-256: CONNECT (Authentication Method, client-first-message) → AUTH 0x18
//! (server-first) → AUTH 0x18 from the client (client-final) → CONNACK 0x00 carrying the
//! server-final-message, or CONNACK 0x86 (wrong password, unknown user) / 0x87 (replayed or
//! garbled exchange). Any other method gets CONNACK 0x8C. The SCRAM arithmetic is in
//! [`crate::scram`]; this module only moves packets.
//!
//! The result ([`Proven`]) goes to the driver's `accept` (`conn/driver.rs`): a proven user
//! name becomes the connection's [`Identity::User`](crate::security::Identity) without a
//! password check.

use std::net::SocketAddr;

use switchboard_mqtt::{
    Auth, ByteString, Bytes, BytesMut, ConnAck, Connect, Decoder, Packet, ProtocolVersion,
    ReasonCode,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{Broker, Metrics};
use crate::scram::{self, ScramError, ServerExchange};
use crate::security::ConnectionMeta;

/// What was proven before CONNACK.
#[derive(Debug, Default)]
pub(super) struct Proven {
    /// The user name proven below CONNECT's user name and password: the SCRAM user, else the
    /// verified TLS client certificate's common name.
    pub(super) username: Option<String>,
    /// Authentication Method and Data for the CONNACK (the SCRAM server-final-message).
    pub(super) connack: Option<(ByteString, Bytes)>,
    /// The SCRAM credential the user proved (re-checked when the credential file is reloaded).
    pub(super) scram: Option<crate::scram::Credential>,
}

/// Runs enhanced authentication when the CONNECT asks for it. `None` when the connection was
/// refused (the CONNACK is already written) or ended.
#[expect(
    clippy::too_many_arguments,
    reason = "the connection task's CONNECT-phase state, borrowed piecemeal"
)]
pub(super) async fn run<R, W>(
    broker: &Broker,
    connect: &Connect,
    meta: &ConnectionMeta,
    peer: SocketAddr,
    rd: &mut R,
    wr: &mut W,
    decoder: &mut Decoder,
    rbuf: &mut BytesMut,
) -> Option<Proven>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut proven = Proven {
        username: meta.cert_cn.clone(),
        connack: None,
        scram: None,
    };
    let method = match &connect.properties.authentication_method {
        Some(method) if connect.protocol.is_v5() => method.clone(),
        _ => return Some(proven),
    };
    let version = connect.protocol;
    let credentials = broker.scram_credentials();
    let (Some(credentials), true) = (credentials, &*method == scram::METHOD) else {
        refuse(
            wr,
            version,
            peer,
            ReasonCode::BadAuthenticationMethod,
            "unsupported authentication method",
        )
        .await;
        return None;
    };
    let client_first = connect
        .properties
        .authentication_data
        .clone()
        .unwrap_or_default();
    let Ok(nonce) = scram::fresh_nonce() else {
        refuse(
            wr,
            version,
            peer,
            ReasonCode::ServerUnavailable,
            "no random source",
        )
        .await;
        return None;
    };
    let (exchange, server_first) = match ServerExchange::start(&credentials, &client_first, &nonce)
    {
        Ok(started) => started,
        Err(err) => {
            refuse(wr, version, peer, failure_code(&err), &err.to_string()).await;
            return None;
        }
    };
    let mut auth = Auth {
        code: ReasonCode::ContinueAuthentication,
        ..Auth::default()
    };
    auth.properties.authentication_method = Some(method.clone());
    auth.properties.authentication_data = Some(Bytes::from(server_first));
    if !write_packet(wr, version, Packet::Auth(auth)).await {
        return None;
    }
    let client_final = loop {
        match decoder.decode(rbuf) {
            Ok(Some(Packet::Auth(auth)))
                if auth.code == ReasonCode::ContinueAuthentication
                    && auth.properties.authentication_method.as_ref() == Some(&method) =>
            {
                break auth.properties.authentication_data.unwrap_or_default();
            }
            Ok(Some(Packet::Disconnect(_))) => return None,
            Ok(Some(_)) | Err(_) => {
                refuse(
                    wr,
                    version,
                    peer,
                    ReasonCode::ProtocolError,
                    "[MQTT-4.12.0-1] expected AUTH 0x18 with the same authentication method",
                )
                .await;
                return None;
            }
            Ok(None) => {}
        }
        rbuf.reserve(512);
        match rd.read_buf(rbuf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => Metrics::add(&broker.metrics().bytes_received, n as u64),
        }
    };
    let user = exchange.username().to_owned();
    match exchange.finish(&client_final) {
        Ok(success) => {
            tracing::debug!(%peer, user = %success.username, "SCRAM-SHA-256 authentication succeeded");
            proven.scram = credentials.get(&success.username).cloned();
            proven.username = Some(success.username);
            proven.connack = Some((method, Bytes::from(success.server_final)));
            Some(proven)
        }
        Err(err) => {
            tracing::info!(%peer, %user, "SCRAM-SHA-256 authentication failed: {err}");
            if err == ScramError::BadProof {
                // The same back-off as a wrong password.
                let delay = broker.security().login_failed(peer.ip(), Some(&user));
                tokio::time::sleep(delay).await;
            }
            refuse(wr, version, peer, failure_code(&err), &err.to_string()).await;
            None
        }
    }
}

fn failure_code(err: &ScramError) -> ReasonCode {
    match err {
        ScramError::BadProof => ReasonCode::BadUserNameOrPassword,
        ScramError::Malformed(_) | ScramError::Mismatch => ReasonCode::NotAuthorized,
    }
}

/// Writes a refusing CONNACK (v5, with a reason string).
async fn refuse<W: AsyncWrite + Unpin>(
    wr: &mut W,
    version: ProtocolVersion,
    peer: SocketAddr,
    code: ReasonCode,
    why: &str,
) {
    tracing::debug!(%peer, "CONNECT refused ({code:?}): {why}");
    let mut ack = ConnAck::new(false, code);
    ack.properties.reason_string = Some(why.into());
    write_packet(wr, version, Packet::ConnAck(ack)).await;
}

/// Encodes, writes and flushes one packet (bounded in time); false on failure.
async fn write_packet<W: AsyncWrite + Unpin>(
    wr: &mut W,
    version: ProtocolVersion,
    packet: Packet,
) -> bool {
    let mut out = BytesMut::new();
    if packet.encode(version, &mut out).is_err() {
        return false;
    }
    // Flushed: TLS and WebSocket streams send only on flush.
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            wr.write_all(&out).await?;
            wr.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}
