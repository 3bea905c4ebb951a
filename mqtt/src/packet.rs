//! The [`Packet`] enum that dispatches to one module per packet type, and the fixed header
//! (packet type, flags, remaining length) shared by all of them.

use bytes::{BufMut, BytesMut};

use crate::codec::Reader;
use crate::error::{DecodeError, EncodeError};
use crate::types::ProtocolVersion;
use crate::{
    Auth, ConnAck, Connect, Disconnect, PubAck, PubComp, PubRec, PubRel, Publish, SubAck,
    Subscribe, UnsubAck, Unsubscribe, varint,
};

/// The control packet type, the high nibble of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// Reads the packet type from the first byte of a fixed header.
    ///
    /// # Errors
    /// [`DecodeError::ReservedPacketType`] for type 0.
    pub const fn from_first_byte(byte: u8) -> Result<Self, DecodeError> {
        Ok(match byte >> 4 {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            t => return Err(DecodeError::ReservedPacketType(t)),
        })
    }

    /// The fixed header flags every packet but PUBLISH must carry ([MQTT-2.1.3-1]).
    #[must_use]
    pub const fn fixed_flags(self) -> u8 {
        match self {
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => 0b0010,
            _ => 0,
        }
    }
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// This packet's type.
    #[must_use]
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    /// The remaining length: everything after the fixed header.
    fn body_len(&self, version: ProtocolVersion) -> usize {
        match self {
            Self::Connect(p) => p.body_len(),
            Self::ConnAck(p) => p.body_len(version),
            Self::Publish(p) => p.body_len(version),
            Self::PubAck(p) => p.body_len(version),
            Self::PubRec(p) => p.body_len(version),
            Self::PubRel(p) => p.body_len(version),
            Self::PubComp(p) => p.body_len(version),
            Self::Subscribe(p) => p.body_len(version),
            Self::SubAck(p) => p.body_len(version),
            Self::Unsubscribe(p) => p.body_len(version),
            Self::UnsubAck(p) => p.body_len(version),
            Self::PingReq | Self::PingResp => 0,
            Self::Disconnect(p) => p.body_len(version),
            Self::Auth(p) => p.body_len(),
        }
    }

    /// The whole encoded size (fixed header included) in `version`. For CONNECT the packet's own
    /// [`Connect::protocol`] decides and `version` is ignored.
    #[must_use]
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = self.body_len(version);
        1 + varint::len(body) + body
    }

    /// Appends this packet, encoded for `version`, to `out` (reserving the exact size first).
    /// CONNECT is encoded for its own [`Connect::protocol`]. Fields a version cannot carry
    /// (reason codes and properties before 5.0) are left out; v3 SUBACK failure codes become
    /// 0x80.
    ///
    /// # Errors
    /// An [`EncodeError`] when the packet cannot be represented (string over 64 KiB, property
    /// not allowed in this packet, AUTH before 5.0, ...). `out` is then left unchanged.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let body = self.body_len(version);
        if body > varint::MAX as usize {
            return Err(EncodeError::PacketTooLarge { size: body });
        }
        let t = self.packet_type();
        if t == PacketType::Auth && !version.is_v5() {
            return Err(EncodeError::NotInVersion {
                packet_type: t,
                version,
            });
        }
        let start = out.len();
        out.reserve(1 + varint::len(body) + body);
        let flags = match self {
            Self::Publish(p) => p.flags(),
            _ => t.fixed_flags(),
        };
        out.put_u8(((t as u8) << 4) | flags);
        varint::write(out, body as u32);
        let result = match self {
            Self::Connect(p) => p.encode_body(out),
            Self::ConnAck(p) => p.encode_body(version, out),
            Self::Publish(p) => p.encode_body(version, out),
            Self::PubAck(p) => p.encode_body(version, out),
            Self::PubRec(p) => p.encode_body(version, out),
            Self::PubRel(p) => p.encode_body(version, out),
            Self::PubComp(p) => p.encode_body(version, out),
            Self::Subscribe(p) => p.encode_body(version, out),
            Self::SubAck(p) => p.encode_body(version, out),
            Self::Unsubscribe(p) => p.encode_body(version, out),
            Self::UnsubAck(p) => p.encode_body(version, out),
            Self::PingReq | Self::PingResp => Ok(()),
            Self::Disconnect(p) => p.encode_body(version, out),
            Self::Auth(p) => p.encode_body(out),
        };
        if let Err(e) = result {
            out.truncate(start);
            return Err(e);
        }
        debug_assert_eq!(out.len() - start, 1 + varint::len(body) + body);
        Ok(())
    }

    /// Parses one packet body. `first` is the first byte of the fixed header.
    #[inline]
    pub(crate) fn decode_body(
        first: u8,
        t: PacketType,
        body: Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let flags = first & 0x0F;
        if t != PacketType::Publish && flags != t.fixed_flags() {
            return Err(DecodeError::ReservedFlags {
                packet_type: t,
                flags,
            });
        }
        Ok(match t {
            PacketType::Connect => Self::Connect(Box::new(Connect::decode(body)?)),
            PacketType::ConnAck => Self::ConnAck(ConnAck::decode(body, version)?),
            PacketType::Publish => Self::Publish(Publish::decode(flags, body, version)?),
            PacketType::PubAck => Self::PubAck(PubAck::decode(body, version)?),
            PacketType::PubRec => Self::PubRec(PubRec::decode(body, version)?),
            PacketType::PubRel => Self::PubRel(PubRel::decode(body, version)?),
            PacketType::PubComp => Self::PubComp(PubComp::decode(body, version)?),
            PacketType::Subscribe => Self::Subscribe(Subscribe::decode(body, version)?),
            PacketType::SubAck => Self::SubAck(SubAck::decode(body, version)?),
            PacketType::Unsubscribe => Self::Unsubscribe(Unsubscribe::decode(body, version)?),
            PacketType::UnsubAck => Self::UnsubAck(UnsubAck::decode(body, version)?),
            PacketType::PingReq | PacketType::PingResp => {
                if !body.is_empty() {
                    return Err(DecodeError::TrailingBytes(t));
                }
                if t == PacketType::PingReq {
                    Self::PingReq
                } else {
                    Self::PingResp
                }
            }
            PacketType::Disconnect => Self::Disconnect(Disconnect::decode(body, version)?),
            PacketType::Auth => {
                if !version.is_v5() {
                    return Err(DecodeError::ReservedPacketType(15));
                }
                Self::Auth(Auth::decode(body)?)
            }
        })
    }
}

macro_rules! from_packet {
    ($($name:ident),*) => {$(
        impl From<$name> for Packet {
            fn from(p: $name) -> Self {
                Self::$name(p)
            }
        }
    )*};
}
from_packet!(
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth
);

impl From<Connect> for Packet {
    fn from(p: Connect) -> Self {
        Self::Connect(Box::new(p))
    }
}
