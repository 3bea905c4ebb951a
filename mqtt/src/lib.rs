//! Sans-I/O MQTT 3.1, 3.1.1 and 5.0 codec and client protocol state.
//!
//! This crate is the one MQTT implementation of Switchboard: the gateway (broker), the browser
//! wasm client, the device simulator and the load generator all use it. It never touches a
//! socket or a clock: bytes go into a [`Decoder`] and come out as [`Packet`]s, packets are
//! written into a [`BytesMut`] with [`Packet::encode`], and the [`client::ClientState`] machine
//! takes packets and the current time and answers with an ordered list of
//! [`client::Action`]s.
//!
//! Decoding is zero-copy: topics, strings and payloads of a decoded packet are slices of the
//! buffer the bytes arrived in ([`Bytes`] / [`ByteString`]).
//!
//! Feature `scram`: the `scram` module, SCRAM-SHA-256 for MQTT 5 enhanced authentication (the
//! client side the gateway's Rust clients and the browser client share, and the arithmetic of
//! the gateway's server side).
//!
//! ```
//! use switchboard_mqtt::{BytesMut, Decoder, Packet, ProtocolVersion, Publish, QosPid};
//!
//! let publish = Publish {
//!     dup: false,
//!     qos_pid: QosPid::AtMostOnce,
//!     retain: false,
//!     topic: "sensors/kitchen/temp".into(),
//!     properties: Default::default(),
//!     payload: "21.5".into(),
//! };
//! let mut wire = BytesMut::new();
//! Packet::Publish(publish.clone()).encode(ProtocolVersion::V5, &mut wire)?;
//!
//! let mut decoder = Decoder::new(1 << 20);
//! decoder.set_version(ProtocolVersion::V5);
//! assert_eq!(decoder.decode(&mut wire)?, Some(Packet::Publish(publish)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use bytes::{Bytes, BytesMut};
pub use bytestring::ByteString;

mod ack;
mod auth;
pub mod client;
mod codec;
mod connack;
mod connect;
mod decoder;
mod disconnect;
mod error;
mod packet;
mod properties;
mod publish;
mod reason;
#[cfg(feature = "scram")]
pub mod scram;
mod suback;
mod subscribe;
pub mod topic;
mod types;
mod unsuback;
mod unsubscribe;
pub mod varint;

pub use ack::{PubAck, PubComp, PubRec, PubRel};
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, LastWill};
pub use decoder::Decoder;
pub use disconnect::Disconnect;
pub use error::{DecodeError, EncodeError};
pub use packet::{Packet, PacketType};
pub use properties::{Properties, PropertyId};
pub use publish::Publish;
pub use reason::ReasonCode;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscriptionOptions};
pub use topic::TopicError;
pub use types::{PacketId, ProtocolVersion, QoS, QosPid};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

#[cfg(test)]
mod test_util {
    use crate::{BytesMut, DecodeError, Decoder, Packet, PacketId, ProtocolVersion};

    pub(crate) fn pid(n: u16) -> PacketId {
        PacketId::new(n).expect("non-zero test packet id")
    }

    pub(crate) fn encode(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
        let mut out = BytesMut::new();
        p.encode(v, &mut out).expect("encodes");
        assert_eq!(out.len(), p.encoded_len(v), "encoded_len agrees");
        out.to_vec()
    }

    /// Decodes one whole packet; it must use up all of `bytes`.
    pub(crate) fn decode(bytes: &[u8], v: Option<ProtocolVersion>) -> Result<Packet, DecodeError> {
        let mut d = Decoder::new(u32::MAX);
        if let Some(v) = v {
            d.set_version(v);
        }
        let mut buf = BytesMut::from(bytes);
        let p = d.decode(&mut buf)?.expect("a whole packet");
        assert!(buf.is_empty(), "packet used all bytes");
        Ok(p)
    }
}
