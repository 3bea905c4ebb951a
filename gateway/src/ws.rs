//! MQTT over WebSocket: the upgrade on the HTTP listener and the byte-stream adapter.
//!
//! Flow: [`crate::http`] routes a request for the WebSocket path to [`Endpoint::upgrade`], which
//! checks the handshake (method, `Upgrade`, version, key), the `Origin` allow-list and the
//! `Sec-WebSocket-Protocol` offer, reserves a broker connection slot and answers `101`. A task
//! (tracked with the HTTP connections, so shutdown waits for it) then waits for hyper to hand
//! over the socket, wraps it in a tokio-tungstenite [`WebSocketStream`] with the configured
//! frame and message limits, and gives the [`WsByteStream`] adapter to the same MQTT connection
//! handler that serves TCP ([`MqttHandler`], implemented by [`Broker`]).
//!
//! MQTT over WebSocket ([MQTT-6.0.0-1], [MQTT-6.0.0-2]) is a byte stream carried in binary
//! messages with no alignment between packets and messages: the adapter concatenates incoming
//! binary messages and turns everything written between two flushes into one binary message.
//!
//! permessage-deflate is not offered: tungstenite 0.30 has no implementation of it, so the
//! `Sec-WebSocket-Extensions` offer of a browser is ignored (as RFC 6455 allows).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, Transport};
use crate::cross_site::Origins;
use crate::web::{Body, query_param, text};
use crate::web::{HttpConfig, IpNet};

/// Subprotocol names accepted for MQTT, in order of preference: `mqtt` is the name MQTT 3.1.1
/// and 5.0 register ([MQTT-6.0.0-3]); the others are used by older clients and libraries.
pub const SUBPROTOCOLS: [&str; 5] = ["mqtt", "mqttv3.1.1", "mqttv3.1", "mqtt-v5", "mqttv5"];

/// Largest binary message the adapter sends; a flush of more bytes is split into several.
const MAX_OUTGOING_MESSAGE: usize = 256 << 10;

/// The socket an upgraded WebSocket runs on.
pub type UpgradedIo = TokioIo<Upgraded>;

/// A future serving one MQTT connection to its end.
pub type Serving = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A reserved connection slot, held for the connection's lifetime (dropping it frees the slot).
pub type Slot = Box<dyn Send>;

/// What the HTTP side needs from the MQTT side: a connection limit and a connection handler.
///
/// [`Broker`] implements it; tests can plug in an echo handler.
pub trait MqttHandler: Send + Sync + 'static {
    /// Reserves a connection slot, or `None` when the connection limit is reached (the upgrade
    /// is then refused with `503`).
    fn reserve(&self) -> Option<Slot>;

    /// Serves one MQTT connection over `stream` until it ends or `shutdown` is cancelled.
    /// `transport` says whether it came over HTTPS (WSS); `meta` is what the handshake carried
    /// for authentication (`Origin` header, `?token=`, the TLS client certificate's name).
    fn serve(
        &self,
        stream: WsByteStream<UpgradedIo>,
        peer: SocketAddr,
        transport: Transport,
        meta: crate::security::ConnectionMeta,
        shutdown: CancellationToken,
    ) -> Serving;

    /// Counts one WebSocket handshake: accepted (`101`) or refused. Does nothing by default.
    fn handshake(&self, accepted: bool) {
        let _ = accepted;
    }
}

impl MqttHandler for Broker {
    fn reserve(&self) -> Option<Slot> {
        self.try_acquire_connection()
            .map(|permit| Box::new(permit) as Slot)
    }

    fn serve(
        &self,
        stream: WsByteStream<UpgradedIo>,
        peer: SocketAddr,
        transport: Transport,
        meta: crate::security::ConnectionMeta,
        shutdown: CancellationToken,
    ) -> Serving {
        let broker = self.clone();
        Box::pin(async move {
            broker
                .serve_connection_with(stream, peer, transport, meta, shutdown)
                .await;
        })
    }

    fn handshake(&self, accepted: bool) {
        let m = self.metrics();
        let counter = if accepted {
            &m.ws_handshakes
        } else {
            &m.ws_rejections
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The MQTT over WebSocket endpoint of an HTTP listener.
pub struct Endpoint {
    path: String,
    ws_config: WebSocketConfig,
    /// Which browser origins may open a session (`[http] allowed_origins`, `allowed_hosts`).
    origins: Origins,
    trusted_proxies: Vec<IpNet>,
    handshake_timeout: Duration,
    handler: Arc<dyn MqttHandler>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("path", &self.path)
            .field("origins", &self.origins)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint configured by the `[http]` table, serving connections with `handler`.
    #[must_use]
    pub fn new(config: &HttpConfig, handler: Arc<dyn MqttHandler>) -> Self {
        let path = if config.websocket_path.starts_with('/') {
            config.websocket_path.clone()
        } else {
            format!("/{}", config.websocket_path)
        };
        Self {
            path,
            // tungstenite's default 128 KiB read buffer would be allocated up front for every
            // connection; 4 KiB keeps idle WebSocket clients cheap (it grows with traffic).
            ws_config: WebSocketConfig::default()
                .read_buffer_size(4096)
                .max_message_size(Some(config.max_message_size))
                .max_frame_size(Some(config.max_frame_size.min(config.max_message_size)))
                // Our adapter already coalesces writes; let every flush go out at once.
                .write_buffer_size(0),
            origins: Origins::new(&config.allowed_origins, &config.allowed_hosts),
            trusted_proxies: config.trusted_proxies.clone(),
            handshake_timeout: Duration::from_secs(config.handshake_timeout.max(1)),
            handler,
        }
    }

    /// The request path this endpoint answers.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Answers a request for the WebSocket path: `101` and a task serving the connection
    /// (spawned on `tasks`, ended by `shutdown`), or an error status with a text body.
    pub fn upgrade(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Response<Body> {
        let accept = match self.check(&req) {
            Ok(accept) => accept,
            Err(response) => {
                self.handler.handshake(false);
                return *response;
            }
        };
        let Some(slot) = self.handler.reserve() else {
            self.handler.handshake(false);
            tracing::warn!(%peer, "connection limit reached, refusing a WebSocket");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "connection limit reached\n",
            );
        };
        let client = client_addr(peer, req.headers(), &self.trusted_proxies);
        // Set by the HTTP listener when the request came over TLS.
        let secure = req.extensions().get::<crate::tls::TlsClient>().cloned();
        // For authentication: a token-bound origin is checked against `Origin`, and browsers
        // (which cannot set headers on a WebSocket) pass a token as `?token=`.
        let meta = crate::security::ConnectionMeta {
            origin: req
                .headers()
                .get(header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .map(str::to_owned),
            token: query_param(req.uri().query(), "token"),
            ..crate::security::ConnectionMeta::default()
        };
        let handler = Arc::clone(&self.handler);
        let config = self.ws_config;
        let deadline = self.handshake_timeout;
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let upgraded = tokio::select! {
                () = shutdown.cancelled() => return,
                upgraded = tokio::time::timeout(deadline, hyper::upgrade::on(&mut req)) => upgraded,
            };
            let upgraded = match upgraded {
                Ok(Ok(upgraded)) => upgraded,
                Ok(Err(err)) => {
                    tracing::debug!(%client, "websocket upgrade failed: {err}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%client, "websocket upgrade not completed in time");
                    return;
                }
            };
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            tracing::debug!(%client, %peer, "websocket connection");
            let stream = WsByteStream::new(ws);
            let mut meta = meta;
            let transport = match secure {
                Some(tls) => {
                    meta.cert_cn = tls.cert_cn;
                    Transport::WebSocketTls
                }
                None => Transport::WebSocket,
            };
            handler
                .serve(stream, client, transport, meta, shutdown)
                .await;
            drop(slot);
        });
        self.handler.handshake(true);
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept.key);
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, accept.protocol);
        response
    }

    /// Validates the handshake request; the error is the response refusing it.
    fn check(&self, req: &Request<Incoming>) -> Result<Accept, Box<Response<Body>>> {
        let headers = req.headers();
        let is_upgrade = req.method() == Method::GET
            && header_has_token(headers, &header::CONNECTION, "upgrade")
            && header_has_token(headers, &header::UPGRADE, "websocket");
        if !is_upgrade {
            let mut response = text(
                StatusCode::UPGRADE_REQUIRED,
                "this is the MQTT over WebSocket endpoint: connect with a WebSocket client \
                 offering the `mqtt` subprotocol\n",
            );
            response
                .headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return Err(Box::new(response));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v != "13")
        {
            let mut response = text(
                StatusCode::BAD_REQUEST,
                "unsupported WebSocket version: only 13 is supported\n",
            );
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return Err(Box::new(response));
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(Box::new(text(
                StatusCode::BAD_REQUEST,
                "missing Sec-WebSocket-Key header\n",
            )));
        };
        if !self.origin_allowed(headers) {
            let origin = headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            tracing::info!(origin, "websocket from a disallowed origin refused");
            return Err(Box::new(text(
                StatusCode::FORBIDDEN,
                "origin not allowed: add it to [http] allowed_origins (or, when it names this gateway, \
                 the name to [http] allowed_hosts)\n",
            )));
        }
        let protocol = choose_subprotocol(headers)
            .map_err(|why| Box::new(text(StatusCode::BAD_REQUEST, why)))?;
        let key = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .expect("base64 is a valid header value");
        Ok(Accept { key, protocol })
    }

    /// Requests without `Origin` (non-browser clients) pass; a browser origin passes when it is
    /// the gateway's own (its `Host`, when that is one of the gateway's names), a loopback
    /// origin, or in the configured list ([`Origins`]).
    pub(crate) fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        self.origins.allows(headers)
    }
}

/// The parts of a valid handshake that go into the `101` response.
struct Accept {
    key: HeaderValue,
    protocol: HeaderValue,
}

/// Picks the subprotocol from every `Sec-WebSocket-Protocol` header (comma-separated lists):
/// `mqtt` when offered, else the first offered name MQTT clients use. The chosen name is echoed
/// exactly as the client wrote it.
///
/// # Errors
/// A text for the `400` body when nothing acceptable is offered.
fn choose_subprotocol(headers: &HeaderMap) -> Result<HeaderValue, &'static str> {
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Err(
            "missing Sec-WebSocket-Protocol: MQTT over WebSocket needs the `mqtt` subprotocol\n",
        );
    }
    let known = |name: &str| {
        SUBPROTOCOLS
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name))
    };
    offered
        .iter()
        .filter_map(|name| known(name).map(|rank| (rank.min(1), *name)))
        .min_by_key(|(rank, _)| *rank)
        .and_then(|(_, name)| HeaderValue::from_str(name).ok())
        .ok_or(
            "unsupported Sec-WebSocket-Protocol: offer `mqtt` (or mqttv3.1, mqttv3.1.1, mqtt-v5)\n",
        )
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn header_has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The client's address, used by the WebSocket endpoint and the HTTP API alike: the TCP peer, or
/// (only when the peer is a trusted proxy) the hop the trusted proxies recorded in `Forwarded`
/// and `X-Forwarded-For`. Each list is walked from the right, skipping trusted proxies: the
/// right-most untrusted hop is the client, so entries a client wrote itself are never reached.
/// An unknown or unparseable hop (`unknown`, `_hidden`), or both headers present but naming
/// different clients, or a forwarding header that is not text (a proxy appends to the value the
/// client sent, so the client's bytes can make the proxy's entry unreadable), gives
/// [`UNKNOWN_CLIENT`] (remote, never loopback). A hop without a port gets port 0.
pub(crate) fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip.to_canonical()));
    if !is_trusted(peer.ip()) {
        return peer;
    }
    if headers
        .get_all(header::FORWARDED)
        .iter()
        .chain(headers.get_all("x-forwarded-for"))
        .any(|v| v.to_str().is_err())
    {
        return UNKNOWN_CLIENT;
    }
    let forwarded: Vec<&str> = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| value.trim().trim_matches('"'))
                })
                // An element without `for=` names no client: it cannot be believed.
                .unwrap_or("")
        })
        .collect();
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let walk = |hops: &[&str]| -> Option<SocketAddr> {
        let mut client = peer;
        for hop in hops.iter().rev() {
            client = parse_hop(hop)?;
            if !is_trusted(client.ip()) {
                break;
            }
        }
        Some(client)
    };
    match (forwarded.is_empty(), xff.is_empty()) {
        (true, true) => peer,
        (false, true) => walk(&forwarded).unwrap_or(UNKNOWN_CLIENT),
        (true, false) => walk(&xff).unwrap_or(UNKNOWN_CLIENT),
        (false, false) => match (walk(&forwarded), walk(&xff)) {
            (Some(a), Some(b)) if a.ip().to_canonical() == b.ip().to_canonical() => a,
            _ => UNKNOWN_CLIENT,
        },
    }
}

/// The client address of a proxied request whose client could not be determined: `0.0.0.0:0`,
/// which is not loopback (such a client is treated as remote).
pub(crate) const UNKNOWN_CLIENT: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Parses `1.2.3.4`, `1.2.3.4:5`, `[::1]:5` or `::1` into an address (port 0 when absent).
fn parse_hop(hop: &str) -> Option<SocketAddr> {
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip = hop.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

/// An MQTT byte stream over a WebSocket: [`AsyncRead`] yields the concatenated payloads of the
/// binary messages received, [`AsyncWrite`] buffers until `flush`, which sends everything
/// buffered as one binary message.
///
/// A text message is a protocol error ([MQTT-6.0.0-1]): the adapter closes the WebSocket with
/// 1002 and the read fails; a message over the size limit closes it with 1009. A close from the
/// peer reads as end of stream. Pings are answered by tungstenite while the stream is read.
/// `shutdown` flushes, then runs the closing handshake.
#[derive(Debug)]
pub struct WsByteStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    rx: Bytes,
    /// Bytes written since the last flush; sent as one binary message by `poll_flush`.
    tx: BytesMut,
    /// Set when the peer broke the protocol: the close frame still to send (taken when queued)
    /// and the error every later read returns.
    failed: Option<(Option<CloseFrame>, &'static str)>,
    /// The peer closed the WebSocket (or the socket ended): reads return end of stream.
    eof: bool,
}

impl<S> WsByteStream<S> {
    /// Wraps an established WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            rx: Bytes::new(),
            tx: BytesMut::new(),
            failed: None,
            eof: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsByteStream<S> {
    /// Sends the close frame of a protocol failure, then reports the failure.
    fn poll_fail(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((frame, why)) = &mut self.failed else {
            return Poll::Ready(Ok(()));
        };
        let why = *why;
        if frame.is_some() {
            if ready!(Pin::new(&mut self.ws).poll_ready(cx)).is_ok() {
                let frame = self.failed.as_mut().and_then(|(frame, _)| frame.take());
                let _ = Pin::new(&mut self.ws).start_send(Message::Close(frame));
            } else if let Some((frame, _)) = &mut self.failed {
                *frame = None;
            }
        }
        // The close is best effort: the connection is failing anyway.
        let _ = ready!(Pin::new(&mut self.ws).poll_flush(cx));
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)))
    }

    fn fail(&mut self, code: CloseCode, why: &'static str) {
        tracing::debug!("websocket closed: {why}");
        self.rx = Bytes::new();
        self.failed = Some((
            Some(CloseFrame {
                code,
                reason: why.into(),
            }),
            why,
        ));
    }

    /// Hands the buffered output to tungstenite as binary messages (does not flush it).
    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tx.is_empty() {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(into_io)?;
            let n = self.tx.len().min(MAX_OUTGOING_MESSAGE);
            let message = Message::Binary(self.tx.split_to(n).freeze());
            Pin::new(&mut self.ws)
                .start_send(message)
                .map_err(into_io)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsByteStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.failed.is_some() {
                return this.poll_fail(cx);
            }
            if !this.rx.is_empty() {
                let n = this.rx.len().min(buf.remaining());
                buf.put_slice(&this.rx[..n]);
                this.rx.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.rx = data,
                Some(Ok(Message::Text(_))) => this.fail(
                    CloseCode::Protocol,
                    "MQTT over WebSocket uses binary messages only [MQTT-6.0.0-1]",
                ),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => this.eof = true,
                Some(Err(WsError::Capacity(_))) => {
                    this.fail(CloseCode::Size, "WebSocket message too large");
                }
                Some(Err(WsError::Protocol(_) | WsError::Utf8(_))) => {
                    this.fail(CloseCode::Protocol, "WebSocket protocol error");
                }
                Some(Err(err)) => return Poll::Ready(Err(into_io(err))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsByteStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.tx.len() >= MAX_OUTGOING_MESSAGE {
            // Bound the buffer: hand a full message to tungstenite before taking more.
            ready!(this.poll_send_buffered(cx))?;
            ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(into_io)?;
        }
        let n = buf.len().min(MAX_OUTGOING_MESSAGE - this.tx.len());
        this.tx.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(into_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed.is_none() && !this.eof {
            ready!(this.poll_send_buffered(cx))?;
        } else {
            // The peer closed or broke the protocol: nothing more can be sent but the close.
            this.tx.clear();
        }
        // Sends our close frame (or flushes tungstenite's reply to the peer's).
        match ready!(Pin::new(&mut this.ws).poll_close(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(err) => Poll::Ready(Err(into_io(err))),
        }
    }
}

fn into_io(err: WsError) -> io::Error {
    match err {
        WsError::Io(err) => err,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "websocket closed")
        }
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn subprotocols_are_negotiated() {
        let pick = |offer: &[&str]| {
            let pairs: Vec<_> = offer
                .iter()
                .map(|o| ("sec-websocket-protocol", *o))
                .collect();
            choose_subprotocol(&headers(&pairs)).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(pick(&["mqtt"]).unwrap(), "mqtt");
        assert_eq!(pick(&["mqttv3.1, mqtt"]).unwrap(), "mqtt");
        assert_eq!(pick(&["chat", "mqttv3.1.1"]).unwrap(), "mqttv3.1.1");
        assert_eq!(pick(&["mqttv3.1"]).unwrap(), "mqttv3.1");
        assert_eq!(pick(&["mqtt-v5"]).unwrap(), "mqtt-v5");
        assert_eq!(pick(&["MQTT"]).unwrap(), "MQTT");
        assert!(pick(&[]).unwrap_err().contains("missing"));
        assert!(
            pick(&["chat, superchat"])
                .unwrap_err()
                .contains("unsupported")
        );
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let peer: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.9")]);
        assert_eq!(
            client_addr(peer, &xff, &trusted),
            "203.0.113.7:0".parse().unwrap()
        );
        assert_eq!(client_addr(peer, &xff, &[]), peer, "untrusted peer");
        let fwd = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"",
        )]);
        assert_eq!(
            client_addr(peer, &fwd, &trusted),
            "[2001:db8::1]:4711".parse().unwrap()
        );
        let hidden = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(client_addr(peer, &hidden, &trusted), UNKNOWN_CLIENT);
    }

    /// The hop logic behind a loopback proxy: (Forwarded, X-Forwarded-For, expected client).
    #[test]
    fn client_addr_hop_table() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let unknown = UNKNOWN_CLIENT.to_string();
        let cases: &[(Option<&str>, Option<&str>, &str)] = &[
            (None, None, "127.0.0.1:5000"),
            (None, Some("203.0.113.7"), "203.0.113.7:0"),
            (None, Some("127.0.0.1, 203.0.113.7"), "203.0.113.7:0"),
            (None, Some("203.0.113.7, 127.0.0.1"), "203.0.113.7:0"),
            (None, Some("127.0.0.1"), "127.0.0.1:0"),
            (None, Some("unknown"), &unknown),
            (None, Some("garbage, 203.0.113.7"), "203.0.113.7:0"),
            (Some("for=203.0.113.7"), None, "203.0.113.7:0"),
            (
                Some("for=127.0.0.1, for=203.0.113.7"),
                None,
                "203.0.113.7:0",
            ),
            (Some("for=unknown"), None, &unknown),
            (Some("proto=http"), None, &unknown),
            // A client's own Forwarded next to the proxy's X-Forwarded-For: they disagree.
            (Some("for=127.0.0.1"), Some("203.0.113.7"), &unknown),
            (Some("for=unknown"), Some("203.0.113.7"), &unknown),
            (Some("for=203.0.113.7"), Some("127.0.0.1"), &unknown),
            (
                Some("for=\"203.0.113.7:4711\""),
                Some("203.0.113.7"),
                "203.0.113.7:4711",
            ),
        ];
        for (fwd, xff, want) in cases {
            let mut pairs = Vec::new();
            if let Some(f) = fwd {
                pairs.push(("forwarded", *f));
            }
            if let Some(x) = xff {
                pairs.push(("x-forwarded-for", *x));
            }
            let got = client_addr(peer, &headers(&pairs), &trusted);
            assert_eq!(
                got.to_string(),
                *want,
                "Forwarded {fwd:?}, X-Forwarded-For {xff:?}"
            );
            if *want == unknown {
                assert!(!got.ip().is_loopback());
            }
        }
    }

    /// Found by the `client_addr` fuzz target: a client's `X-Forwarded-For: 198\xae51.100.2`
    /// reaches us as `198\xae51.100.2, 203.0.113.7` (nginx appends to the client's value); the
    /// value is not text, was skipped as absent, and the client became the loopback proxy.
    #[test]
    fn a_forwarding_header_that_is_not_text_makes_the_client_unknown() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["127.0.0.1".parse().unwrap()];
        for name in ["x-forwarded-for", "forwarded"] {
            let mut map = HeaderMap::new();
            map.append(
                name,
                HeaderValue::from_bytes(b"198\xae51.100.2, 203.0.113.7").unwrap(),
            );
            let client = client_addr(peer, &map, &trusted);
            assert_eq!(client, UNKNOWN_CLIENT, "{name}");
            assert!(!client.ip().is_loopback());
            // From an untrusted peer the headers are not read at all.
            let remote: SocketAddr = "192.0.2.1:5000".parse().unwrap();
            assert_eq!(client_addr(remote, &map, &trusted), remote);
        }
    }

    fn endpoint(origins: &[&str]) -> Endpoint {
        struct Nothing;
        impl MqttHandler for Nothing {
            fn reserve(&self) -> Option<Slot> {
                None
            }
            fn serve(
                &self,
                _: WsByteStream<UpgradedIo>,
                _: SocketAddr,
                _: Transport,
                _: crate::security::ConnectionMeta,
                _: CancellationToken,
            ) -> Serving {
                Box::pin(async {})
            }
        }
        let config = HttpConfig {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allowed_hosts: vec!["gw.lan".to_owned()],
            ..HttpConfig::default()
        };
        Endpoint::new(&config, Arc::new(Nothing))
    }

    #[test]
    fn origins_are_checked() {
        let ep = endpoint(&["https://plugs.example.com"]);
        let allowed = |origin: &str, host: &str| {
            ep.origin_allowed(&headers(&[("origin", origin), ("host", host)]))
        };
        assert!(ep.origin_allowed(&headers(&[("host", "x")])), "no origin");
        assert!(allowed("http://gw.lan:8080", "gw.lan:8080"));
        assert!(allowed("https://gw.lan", "GW.lan:443"));
        assert!(!allowed("http://gw.lan:8081", "gw.lan:8080"));
        // Same-origin with a name that is not the gateway's: a DNS-rebinding page.
        assert!(!allowed("http://evil.example:8080", "evil.example:8080"));
        assert!(allowed("http://localhost:3000", "gw.lan"));
        assert!(allowed("http://127.0.0.1:3000", "gw.lan"));
        assert!(allowed("http://[::1]:3000", "gw.lan"));
        assert!(allowed("https://plugs.example.com/", "gw.lan"));
        assert!(!allowed("https://evil.example", "gw.lan"));
        assert!(!allowed("null", "gw.lan"));
        assert!(endpoint(&["*"]).origin_allowed(&headers(&[("origin", "https://evil.example")])));
    }

    /// A server-side adapter and a client WebSocket over an in-memory pipe.
    async fn pair() -> (
        WsByteStream<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (WsByteStream::new(server), client)
    }

    #[tokio::test]
    async fn binary_messages_are_one_byte_stream() {
        let (mut server, mut client) = pair().await;
        for chunk in [&b"he"[..], b"", b"llo ", b"world"] {
            client
                .send(Message::Binary(Bytes::copy_from_slice(chunk)))
                .await
                .unwrap();
        }
        client.send(Message::Ping(Bytes::new())).await.unwrap();
        client.close(None).await.unwrap();
        let mut all = Vec::new();
        server.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"hello world");
        // Data written after the peer's close is dropped; shutdown still answers the close.
        server.write_all(b"late").await.unwrap();
        server.shutdown().await.unwrap();
        drop(server);
        let mut seen = Vec::new();
        while let Some(Ok(message)) = client.next().await {
            seen.push(message);
        }
        assert_eq!(seen, [Message::Pong(Bytes::new()), Message::Close(None)]);
    }

    #[tokio::test]
    async fn writes_are_coalesced_until_flush() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"one ").await.unwrap();
        server.write_all(b"two").await.unwrap();
        server.flush().await.unwrap();
        server.write_all(b"three").await.unwrap();
        server.shutdown().await.unwrap();
        drop(server);
        let got: Vec<Message> = client
            .by_ref()
            .filter_map(|m| async { m.ok() })
            .collect()
            .await;
        assert_eq!(
            got[..2],
            [
                Message::Binary(Bytes::from_static(b"one two")),
                Message::Binary(Bytes::from_static(b"three")),
            ]
        );
        assert!(matches!(got[2], Message::Close(_)));
    }

    #[tokio::test]
    async fn a_text_message_closes_with_1002() {
        let (mut server, mut client) = pair().await;
        client.send(Message::text("hello")).await.unwrap();
        let mut buf = [0; 8];
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        match client.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Protocol),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_large_flush_is_split_into_bounded_messages() {
        let (mut server, mut client) = pair().await;
        let data = vec![7u8; MAX_OUTGOING_MESSAGE + 10];
        let writer = tokio::spawn(async move {
            server.write_all(&data).await.unwrap();
            server.flush().await.unwrap();
            server
        });
        let mut total = 0;
        while total < MAX_OUTGOING_MESSAGE + 10 {
            match client.next().await {
                Some(Ok(Message::Binary(b))) => {
                    assert!(b.len() <= MAX_OUTGOING_MESSAGE);
                    total += b.len();
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        drop(writer.await.unwrap());
    }
}
