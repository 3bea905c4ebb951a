//! One load-generator connection: a lean driver over the shared codec, not the simulator's
//! client. Setup (CONNECT/CONNACK, SUBSCRIBE/SUBACK) is done packet by packet on the whole
//! [`Conn`]; then it is [`Conn::split`] into a [`ReadSide`] that decodes straight out of its
//! receive buffer and a [`WriteSide`] that encodes into one reused `BytesMut` and writes it once
//! per batch. TCP and WebSocket (subprotocol `mqtt`, binary frames, each write one frame) share
//! everything above the byte transport.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use switchboard_mqtt::{
    ByteString, BytesMut, Connect, Decoder, Disconnect, Packet, PacketId, Properties,
    ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::Transport;

/// Longest wait for CONNACK or SUBACK.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest packet accepted from the broker.
const MAX_PACKET: u32 = 16 << 20;
/// Bytes reserved before each TCP read.
const READ_CHUNK: usize = 64 * 1024;

type Ws = WebSocketStream<TcpStream>;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// MQTT over TCP address.
    pub(crate) mqtt: SocketAddr,
    /// HTTP address serving MQTT over WebSocket at `/mqtt`.
    pub(crate) ws: SocketAddr,
    /// Which of the two to use.
    pub(crate) transport: Transport,
    /// Protocol version of every connection.
    pub(crate) version: ProtocolVersion,
    /// Clean start off and (v5) a session expiry interval.
    pub(crate) persistent_session: bool,
}

/// The receiving half of a transport.
#[derive(Debug)]
enum Reader {
    Tcp(OwnedReadHalf),
    Ws(SplitStream<Ws>),
}

/// The sending half of a transport.
#[derive(Debug)]
enum Writer {
    Tcp(OwnedWriteHalf),
    Ws(SplitSink<Ws, Message>),
}

impl Reader {
    /// Appends received bytes to `buf`; `Ok(false)` when the peer closed. Cancel-safe.
    async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<bool> {
        match self {
            Self::Tcp(r) => {
                buf.reserve(READ_CHUNK);
                Ok(r.read_buf(buf).await? > 0)
            }
            Self::Ws(s) => loop {
                match s.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(false),
                    Some(Ok(Message::Binary(data))) => {
                        buf.extend_from_slice(&data);
                        return Ok(true);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(io::Error::other(err)),
                }
            },
        }
    }
}

impl Writer {
    /// Writes all of `buf` (one WebSocket frame) and leaves it empty, capacity kept.
    async fn write(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        match self {
            Self::Tcp(w) => {
                w.write_all(buf).await?;
                buf.clear();
                Ok(())
            }
            // tungstenite copies the frame into its own buffer and drops the `Bytes`, so the
            // next `reserve` gets the same allocation back.
            Self::Ws(s) => s
                .send(Message::Binary(buf.split().freeze()))
                .await
                .map_err(io::Error::other),
        }
    }
}

/// A connected, not yet split, MQTT connection.
#[derive(Debug)]
pub(crate) struct Conn {
    read: ReadSide,
    write: WriteSide,
}

/// Receiving half: transport, decoder and receive buffer.
#[derive(Debug)]
pub(crate) struct ReadSide {
    reader: Reader,
    decoder: Decoder,
    buf: BytesMut,
}

/// Sending half: transport and the reused encode buffer.
#[derive(Debug)]
pub(crate) struct WriteSide {
    writer: Writer,
    /// Packets encoded since the last write.
    pub(crate) buf: BytesMut,
    /// The protocol version packets are encoded in.
    pub(crate) version: ProtocolVersion,
}

impl ReadSide {
    /// The next packet, reading as needed; `Ok(None)` when the broker closed. Cancel-safe.
    ///
    /// # Errors
    /// On a transport error or a malformed packet.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<Packet>> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(packet));
            }
            if !self.reader.read_into(&mut self.buf).await? {
                return Ok(None);
            }
        }
    }

    /// Reads once (cancel-safe); `Ok(false)` when the broker closed. Then call
    /// [`ReadSide::decode`] until it answers `None`.
    ///
    /// # Errors
    /// On a transport error.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        self.reader.read_into(&mut self.buf).await
    }

    /// The next whole packet already received.
    ///
    /// # Errors
    /// On a malformed packet.
    #[inline]
    pub(crate) fn decode(&mut self) -> anyhow::Result<Option<Packet>> {
        Ok(self.decoder.decode(&mut self.buf)?)
    }
}

impl WriteSide {
    /// Encodes `packet` into the buffer (not written yet).
    ///
    /// # Errors
    /// When the packet cannot be encoded.
    #[inline]
    pub(crate) fn encode(&mut self, packet: &Packet) -> anyhow::Result<()> {
        packet.encode(self.version, &mut self.buf)?;
        Ok(())
    }

    /// Writes everything encoded so far.
    ///
    /// # Errors
    /// On a transport error.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.writer.write(&mut self.buf).await
    }
}

impl Conn {
    /// Opens the transport, sends CONNECT and waits for a successful CONNACK.
    ///
    /// # Errors
    /// When the connection, the WebSocket handshake or CONNECT fails.
    pub(crate) async fn connect(endpoint: &Endpoint, client_id: &str) -> anyhow::Result<Self> {
        let (reader, writer) = match endpoint.transport {
            Transport::Tcp => {
                let stream = TcpStream::connect(endpoint.mqtt)
                    .await
                    .with_context(|| format!("cannot connect to {}", endpoint.mqtt))?;
                stream.set_nodelay(true)?;
                let (r, w) = stream.into_split();
                (Reader::Tcp(r), Writer::Tcp(w))
            }
            Transport::Ws => {
                let stream = TcpStream::connect(endpoint.ws)
                    .await
                    .with_context(|| format!("cannot connect to {}", endpoint.ws))?;
                stream.set_nodelay(true)?;
                let mut request = format!("ws://{}/mqtt", endpoint.ws).into_client_request()?;
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
                // tungstenite's default 128 KiB read buffer per connection would make 10,000
                // idle WebSocket clients cost the load generator over a gigabyte.
                let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
                let (ws, _) =
                    tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                        .await
                        .context("WebSocket handshake failed")?;
                let (w, r) = ws.split();
                (Reader::Ws(r), Writer::Ws(w))
            }
        };
        let mut decoder = Decoder::new(MAX_PACKET);
        decoder.set_version(endpoint.version);
        let mut conn = Self {
            read: ReadSide {
                reader,
                decoder,
                buf: BytesMut::with_capacity(4096),
            },
            write: WriteSide {
                writer,
                buf: BytesMut::with_capacity(4096),
                version: endpoint.version,
            },
        };
        let mut connect = Connect::new(endpoint.version, client_id);
        connect.keep_alive = 0;
        if endpoint.persistent_session {
            connect.clean_start = false;
            if endpoint.version.is_v5() {
                connect.properties.session_expiry_interval = Some(3600);
            }
        }
        conn.write.encode(&Packet::from(connect))?;
        conn.write.flush().await?;
        match conn.expect().await? {
            Packet::ConnAck(ack) if ack.code == ReasonCode::Success => Ok(conn),
            Packet::ConnAck(ack) => bail!("CONNECT refused: {:?}", ack.code),
            other => bail!("expected CONNACK, got {:?}", other.packet_type()),
        }
    }

    /// Subscribes to `filter` at `qos` and waits for a granting SUBACK.
    ///
    /// # Errors
    /// When the subscription is refused or the connection fails.
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        let subscribe = Subscribe {
            pid: PacketId::MIN,
            filters: vec![(ByteString::from(filter), SubscriptionOptions::qos(qos))],
            properties: Properties::default(),
        };
        self.write.encode(&Packet::Subscribe(subscribe))?;
        self.write.flush().await?;
        match self.expect().await? {
            Packet::SubAck(ack) if !ack.codes.iter().any(|c| c.is_error()) => Ok(()),
            Packet::SubAck(ack) => bail!("SUBSCRIBE {filter} refused: {:?}", ack.codes),
            other => bail!("expected SUBACK, got {:?}", other.packet_type()),
        }
    }

    /// Sends DISCONNECT and closes the connection.
    ///
    /// # Errors
    /// On a transport error.
    pub(crate) async fn disconnect(mut self) -> anyhow::Result<()> {
        self.write
            .encode(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))?;
        self.write.flush().await?;
        if let Writer::Ws(sink) = &mut self.write.writer {
            let _ = sink.close().await;
        }
        Ok(())
    }

    /// The two halves, for concurrent reading and writing.
    #[must_use]
    pub(crate) fn split(self) -> (ReadSide, WriteSide) {
        (self.read, self.write)
    }

    async fn expect(&mut self) -> anyhow::Result<Packet> {
        match tokio::time::timeout(SETUP_TIMEOUT, self.read.next()).await {
            Err(_) => bail!("no answer within {SETUP_TIMEOUT:?}"),
            Ok(Err(err)) => Err(err),
            Ok(Ok(None)) => bail!("the broker closed the connection"),
            Ok(Ok(Some(packet))) => Ok(packet),
        }
    }
}
