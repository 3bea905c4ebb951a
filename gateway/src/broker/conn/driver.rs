//! The tokio driver of one connection: the only code here that touches a socket, a clock or a
//! timer. It reads the CONNECT (and runs enhanced authentication and the password check),
//! opens a [`ServerConn`], then loops: pump the session queue, wait for whatever comes first
//! (input, a writable socket, a commit, a deadline, a kick, shutdown) and hand it to the
//! connection, until the connection says it is closing. Then it flushes what was committed,
//! detaches the session, and closes the way HTTP servers do: shut down the write side, drain
//! and discard input for a bounded time, then drop the socket, so a client whose packets were
//! still unread gets its DISCONNECT rather than a reset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_mqtt::{
    ByteString, BytesMut, Connect, DecodeError, Decoder, Packet, ProtocolVersion, ReasonCode,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::connect::{self, Arrival, Refusal};
use super::{End, Limits, Link, ServerConn};
use crate::broker::enhanced_auth::{self, Proven};
use crate::broker::router::{Router, RouterFuture};
use crate::broker::store::Ticket;
use crate::broker::{Broker, Metrics, Transport};
use crate::security::{Authenticator as _, ConnectInfo, ConnectionMeta, Login, token::unix_now};

/// First read buffer capacity: an idle connection costs no more than this.
const READ_MIN: usize = 512;
/// Largest read chunk.
const READ_MAX: usize = 64 * 1024;
/// Time given to a last packet (CONNACK refusal, DISCONNECT) to reach the client.
const GOODBYE: Duration = Duration::from_secs(1);
/// After the server closed a connection: how long, and how many bytes, input is drained and
/// discarded before the socket is dropped.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// The time as the connection sees it (tokio's clock, so paused test time applies).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Serves one connection. See [`Broker::serve_connection`].
pub(in crate::broker) async fn serve<S>(
    broker: &Broker,
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    meta: ConnectionMeta,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Abuse limits first: nothing is read from a source over its connection limit, and only
    // `max_handshakes` connections may sit before their CONNACK at once (slow-loris).
    let Some(_address_slot) = broker.security().enter_address(peer.ip()) else {
        tracing::debug!(%peer, "per-address connection limit reached, closing");
        return;
    };
    let Some(handshake) = broker.security().try_handshake(peer.ip()) else {
        tracing::debug!(%peer, "too many connections in CONNECT, closing");
        return;
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let limits = Limits {
        max_subscriptions: broker.security().limits().max_subscriptions,
        ..Limits::from(broker.config())
    };
    let mut decoder = Decoder::new(limits.max_packet_size);
    let mut rbuf = BytesMut::new();
    let deadline = Duration::from_secs(broker.config().connect_timeout);
    let first = tokio::select! {
        () = shutdown.cancelled() => return,
        r = Box::pin(tokio::time::timeout(deadline, read_connect(broker, &mut rd, &mut decoder, &mut rbuf))) => r,
    };
    let connect = match first {
        Err(_) => {
            tracing::debug!(%peer, "no CONNECT before the deadline, closing");
            return;
        }
        Ok(Err(ConnectError::Io)) => return,
        Ok(Err(ConnectError::Decode(err))) => {
            tracing::debug!(%peer, "bad CONNECT: {err}");
            if matches!(
                err,
                DecodeError::UnsupportedProtocol { .. } | DecodeError::InvalidProtocolName
            ) {
                // [MQTT-3.1.2-2]: CONNACK 0x01 (unacceptable protocol level), then close.
                // Flushed and shut down: TLS and WebSocket streams send only on flush.
                let _ = wr.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
                let _ = tokio::time::timeout(GOODBYE, wr.shutdown()).await;
            }
            return;
        }
        Ok(Ok(connect)) => connect,
    };
    // MQTT 5 enhanced authentication (the AUTH exchange, bounded by another `connect_timeout`)
    // and the TLS client certificate's name.
    let proven = tokio::select! {
        () = shutdown.cancelled() => return,
        r = Box::pin(tokio::time::timeout(deadline, enhanced_auth::run(broker, &connect, &meta, peer, &mut rd, &mut wr, &mut decoder, &mut rbuf))) => r,
    };
    let Ok(Some(proven)) = proven else {
        let _ = tokio::time::timeout(GOODBYE, wr.shutdown()).await;
        return;
    };
    let link = Link {
        router: Arc::new(broker.clone()),
        authorizer: broker.authorizer_arc(),
        limits,
    };
    let arrived = Arrived {
        connect,
        peer,
        transport,
        meta: &meta,
        proven,
        decoder,
    };
    // One-shot futures are boxed so their state does not stay in every idle connection's task.
    let accepted = Box::pin(accept(broker, link, arrived, &mut wr)).await;
    drop(handshake);
    let Some(mut conn) = accepted else {
        let _ = tokio::time::timeout(GOODBYE, wr.shutdown()).await;
        return;
    };
    let metrics = broker.metrics();
    Metrics::add(&metrics.clients_connected, 1);
    broker.client_up(
        conn.client_id(),
        conn.generation(),
        peer,
        transport,
        conn.version(),
        &conn.peer().login,
        conn.kick(),
    );
    run(&mut conn, &mut rd, &mut wr, rbuf, &shutdown, metrics).await;
    let server_closed = matches!(conn.closing(), Some((End::Abnormal, Some(_))));
    let lost = matches!(conn.closing(), Some((End::Abnormal, None)));
    if !lost {
        Box::pin(flush_committed(&mut conn, &mut wr)).await;
    }
    conn.counters().flush_into(metrics);
    broker.client_down(conn.client_id(), conn.generation());
    Metrics::sub(&metrics.clients_connected, 1);
    conn.finish();
    if lost {
        return;
    }
    let _ = tokio::time::timeout(GOODBYE, wr.shutdown()).await;
    if server_closed {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = linger(&mut rd) => {}
        }
    }
}

/// Reads and discards input until EOF, for at most [`LINGER`] and [`LINGER_BYTES`]: the client
/// may still be writing packets sent before it read our DISCONNECT; closing with them unread
/// would reset the connection and lose the DISCONNECT on its way.
async fn linger<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut sink = vec![0; 8 * 1024];
    let mut drained = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while drained < LINGER_BYTES {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[derive(Debug)]
enum ConnectError {
    Io,
    Decode(DecodeError),
}

/// Reads until the first packet is decoded; it must be CONNECT ([MQTT-3.1.0-1]).
async fn read_connect<R: AsyncRead + Unpin>(
    broker: &Broker,
    rd: &mut R,
    decoder: &mut Decoder,
    rbuf: &mut BytesMut,
) -> Result<Box<Connect>, ConnectError> {
    loop {
        match decoder.decode(rbuf) {
            Ok(Some(Packet::Connect(connect))) => return Ok(connect),
            Ok(Some(other)) => {
                return Err(ConnectError::Decode(DecodeError::FirstPacketNotConnect(
                    other.packet_type(),
                )));
            }
            Ok(None) => {}
            Err(err) => return Err(ConnectError::Decode(err)),
        }
        rbuf.reserve(READ_MIN);
        match rd.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Err(ConnectError::Io),
            Ok(n) => Metrics::add(&broker.metrics().bytes_received, n as u64),
        }
    }
}

/// A CONNECT read and past enhanced authentication.
struct Arrived<'a> {
    connect: Box<Connect>,
    peer: SocketAddr,
    transport: Transport,
    meta: &'a ConnectionMeta,
    proven: Proven,
    decoder: Decoder,
}

/// Checks the CONNECT, authenticates the client, attaches its session and opens the
/// connection. `None` when it was refused (the refusing CONNACK is already written).
async fn accept<W: AsyncWrite + Unpin>(
    broker: &Broker,
    link: Link,
    arrived: Arrived<'_>,
    wr: &mut W,
) -> Option<ServerConn> {
    let Arrived {
        connect,
        peer,
        transport,
        meta,
        proven,
        decoder,
    } = arrived;
    let version = connect.protocol;
    if let Err(refusal) = connect::check(&connect, &link.limits, proven.connack.is_some()) {
        refuse(wr, version, peer, &connect, &refusal).await;
        return None;
    }
    // A user name proven by SCRAM or a client certificate needs no password.
    let login = match (proven.username.clone(), proven.scram) {
        (Some(user), Some(credential)) => Login::scram(user, credential),
        (Some(user), None) => Login::proven(user),
        (None, _) => match authenticate(broker, &connect, peer, transport, meta).await {
            Ok(login) => login,
            Err(refusal) => {
                refuse(wr, version, peer, &connect, &refusal).await;
                return None;
            }
        },
    };
    let terms = match connect::terms(&link, &connect, &login, peer, transport, now()) {
        Ok(terms) => terms,
        Err(refusal) => {
            refuse(wr, version, peer, &connect, &refusal).await;
            return None;
        }
    };
    let attached = link
        .router
        .attach(
            &terms.client_id,
            terms.clean_start,
            terms.expiry,
            terms.will.as_deref(),
        )
        .await;
    let arrival = Arrival {
        addr: peer,
        transport,
        login: Arc::new(login),
        username: match proven.username {
            Some(user) => Some(ByteString::from(user)),
            None => connect.username.as_deref().map(ByteString::from),
        },
        auth_data: proven.connack,
        publish_bucket: broker.security().publish_bucket(),
        unix_now: unix_now(),
        decoder,
    };
    Some(ServerConn::open(
        link,
        &connect,
        terms,
        attached,
        arrival,
        now(),
    ))
}

/// Writes a refusing CONNACK, flushed (TLS and WebSocket streams send only on flush) and
/// bounded in time.
async fn refuse<W: AsyncWrite + Unpin>(
    wr: &mut W,
    version: ProtocolVersion,
    peer: SocketAddr,
    connect: &Connect,
    refusal: &Refusal,
) {
    tracing::debug!(%peer, client_id = %connect.client_id, "CONNECT refused ({:?}): {}", refusal.code, refusal.why);
    let out = refusal.connack(version);
    let _ = tokio::time::timeout(GOODBYE, async {
        wr.write_all(&out).await?;
        wr.flush().await
    })
    .await;
}

/// Checks the client's credentials. Password hashes are slow and large on purpose, so a check
/// waits its turn: one at a time per source address, after that address's back-off for the
/// user name (so parallel guesses queue behind each other's failures), then for one of
/// `[limits] password_checks` slots on the blocking pool. A login whose turn does not come
/// within `connect_timeout` is refused with 0x9F Connection rate exceeded (3.1.1: server
/// unavailable) without being checked. A failure lengthens the back-off for its (address, user
/// name); a success clears only that pair.
async fn authenticate(
    broker: &Broker,
    connect: &Connect,
    peer: SocketAddr,
    transport: Transport,
    meta: &ConnectionMeta,
) -> Result<Login, Refusal> {
    let security = Arc::clone(broker.security());
    let busy = Refusal {
        code: ReasonCode::ConnectionRateExceeded,
        why: "too many logins from this address; try again later",
    };
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(broker.config().connect_timeout.max(1));
    let ip = peer.ip();
    let user = connect.username.clone();
    let Some(mut turn) = security.hash_gate().turn(ip, deadline).await else {
        tracing::info!(%peer, "login refused: no turn for a password check before the deadline");
        return Err(busy);
    };
    let wait = security.login_wait(ip, user.as_deref());
    if tokio::time::Instant::now() + wait > deadline {
        tracing::info!(%peer, user = ?user, "login refused: still in failed-login back-off ({wait:?})");
        return Err(busy);
    }
    tokio::time::sleep(wait).await;
    let client_id = connect.client_id.clone();
    let password = connect.password.clone();
    let meta = meta.clone();
    let checker = Arc::clone(&security);
    let name = user.clone();
    let result = turn
        .check(deadline, move || {
            checker.authenticate(&ConnectInfo {
                client_id: &client_id,
                username: name.as_deref(),
                password: password.as_deref(),
                peer,
                transport,
                origin: meta.origin.as_deref(),
                url_token: meta.token.as_deref(),
            })
        })
        .await;
    let Some(result) = result else {
        tracing::info!(%peer, "login refused: no password check slot before the deadline");
        return Err(busy);
    };
    match result {
        Ok(login) => {
            security.login_succeeded(ip, user.as_deref());
            Ok(login)
        }
        Err(code) => {
            let next = security.login_failed(ip, user.as_deref());
            tracing::debug!(%peer, user = ?user, "login failed; the next attempt waits {next:?}");
            Err(Refusal {
                code,
                why: "not authorized",
            })
        }
    }
}

/// Writes some of `buf` (`Some(n)`), or flushes when it is empty (`None`). Cancel safe: a
/// write either happened (and is reported) or did not start.
async fn write_or_flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
) -> std::io::Result<Option<usize>> {
    if buf.is_empty() {
        wr.flush().await.map(|()| None)
    } else {
        wr.write(buf).await.map(Some)
    }
}

/// The connection loop: runs until [`ServerConn::closing`] is set.
async fn run<R, W>(
    conn: &mut ServerConn,
    rd: &mut R,
    wr: &mut W,
    mut rbuf: BytesMut,
    shutdown: &CancellationToken,
    metrics: &Metrics,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if rbuf.is_empty() {
        // Release the CONNECT read buffer; see the idle strategy below.
        rbuf = BytesMut::new();
    }
    let router = Arc::clone(&conn.link.router);
    let session = Arc::clone(conn.session());
    let kick = conn.kick().clone();
    // The wake-up futures live across iterations: re-creating them each time would register
    // and unregister a waiter, and the shutdown token's waiter list is shared by every
    // connection.
    let stopping = shutdown.cancelled();
    let kicked = kick.kicked();
    let notified = session.notify.notified();
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(stopping, kicked, notified, timer);
    // The deadline the timer is armed for. It is re-armed lazily: a read only moves the keep
    // alive deadline later, which the connection checks when the earlier one fires.
    let mut armed: Option<std::time::Instant> = None;
    // The commit being waited for, and its ticket.
    let mut commit: Option<(Ticket, RouterFuture<'_, ()>)> = None;
    let mut read_size = READ_MIN;
    let mut need_flush = false;
    // Process what arrived with the CONNECT.
    conn.handle_input(&mut rbuf, now());
    while conn.closing().is_none() {
        conn.pump(now());
        conn.counters().flush_into(metrics);
        if let Some(at) = conn.poll_timeout()
            && armed.is_none_or(|armed| at < armed)
        {
            timer.as_mut().reset(tokio::time::Instant::from_std(at));
            armed = Some(at);
        }
        if commit.is_none()
            && let Some(ticket) = conn.waiting_for()
        {
            commit = Some((ticket, router.committed(ticket)));
        }
        // An idle connection (nothing buffered, small reads) keeps no read buffer: `read_buf`
        // then allocates 64 bytes for the next read. Partial packets and busy connections read
        // `read_size` bytes at a time.
        if (!rbuf.is_empty() || read_size > READ_MIN) && rbuf.capacity() - rbuf.len() < 64 {
            rbuf.reserve(read_size);
        }
        let spare = (rbuf.capacity() - rbuf.len()).max(64);
        let ready = conn.transmit();
        let writing = !ready.is_empty() || need_flush;
        let reading = conn.wants_input();
        tokio::select! {
            () = &mut stopping => conn.shutdown(),
            () = &mut kicked => conn.kicked(kick.why()),
            () = &mut timer, if armed.is_some() => {
                armed = None;
                conn.handle_timeout(now());
            }
            () = async { commit.as_mut().expect("guarded").1.as_mut().await }, if commit.is_some() => {
                let (ticket, _) = commit.take().expect("guarded");
                conn.committed(ticket);
            }
            io = write_or_flush(wr, ready), if writing => match io {
                Ok(Some(0)) | Err(_) => conn.transport_lost(),
                Ok(Some(n)) => {
                    conn.advance(n);
                    if conn.transmit().is_empty() {
                        need_flush = true;
                    }
                }
                Ok(None) => need_flush = false,
            },
            read = rd.read_buf(&mut rbuf), if reading => match read {
                Ok(0) | Err(_) => conn.transport_lost(),
                Ok(n) => {
                    conn.counters().bytes_received += n as u64;
                    // Grow the read size while reads fill the buffer, shrink it back after.
                    read_size = if n >= spare { (read_size * 2).min(READ_MAX) } else { READ_MIN };
                    conn.handle_input(&mut rbuf, now());
                    if rbuf.is_empty() && read_size == READ_MIN {
                        rbuf = BytesMut::new();
                    }
                }
            },
            () = &mut notified => notified.set(session.notify.notified()),
        }
    }
    conn.counters().flush_into(metrics);
}

/// Writes what is left to write once the connection is closing (the last acknowledgements, a
/// DISCONNECT), waiting for the commits they need; bounded by [`GOODBYE`].
async fn flush_committed<W: AsyncWrite + Unpin>(conn: &mut ServerConn, wr: &mut W) {
    let router: Arc<dyn Router> = Arc::clone(&conn.link.router);
    let _ = tokio::time::timeout(GOODBYE, async {
        loop {
            if let Some(ticket) = conn.waiting_for() {
                router.committed(ticket).await;
                conn.committed(ticket);
                continue;
            }
            let ready = conn.transmit();
            if ready.is_empty() {
                break;
            }
            let n = ready.len();
            wr.write_all(ready).await?;
            conn.advance(n);
        }
        wr.flush().await
    })
    .await;
}
