//! The incremental [`Decoder`]: turns a growing byte buffer into packets. Two steps, as in
//! mini-redis: a cheap check that the fixed header is there and the whole packet has arrived
//! (refusing oversize packets from the fixed header alone, before any body is buffered), then
//! the parse of exactly that many bytes, split off the buffer without copying.

use bytes::{Buf, BytesMut};

use crate::codec::Reader;
use crate::error::DecodeError;
use crate::packet::{Packet, PacketType};
use crate::types::ProtocolVersion;
use crate::varint::{self, VarInt};

/// Incremental decoder for one connection.
///
/// `version` is `None` until a CONNECT is decoded (server side), or set by the caller with
/// [`Decoder::set_version`] (client side).
#[derive(Debug, Clone)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
}

/// What the fixed header at the front of a buffer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    pub(crate) first: u8,
    pub(crate) packet_type: PacketType,
    pub(crate) header_len: usize,
    pub(crate) remaining: usize,
}

impl Decoder {
    /// A decoder refusing packets larger than `max_packet_size` bytes (whole packet, fixed
    /// header included, as the v5 Maximum Packet Size counts it).
    #[must_use]
    pub const fn new(max_packet_size: u32) -> Self {
        Self {
            version: None,
            max_packet_size,
        }
    }

    /// Fixes the protocol version (a client does this after sending CONNECT).
    pub const fn set_version(&mut self, v: ProtocolVersion) {
        self.version = Some(v);
    }

    /// The protocol version, once known.
    #[must_use]
    pub const fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Changes the maximum packet size (for example after a v5 CONNECT announced one).
    pub const fn set_max_packet_size(&mut self, n: u32) {
        self.max_packet_size = n;
    }

    /// The maximum packet size in force.
    #[must_use]
    pub const fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Step one: is a whole packet at the front of `buf`? `Ok(None)` means more bytes are
    /// needed. Checks the packet type and the size limit from the fixed header alone.
    fn check(&self, buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let packet_type = PacketType::from_first_byte(first)?;
        if self.version.is_none() && packet_type != PacketType::Connect {
            return Err(DecodeError::FirstPacketNotConnect(packet_type));
        }
        let (remaining, n) = match varint::read(&buf[1..]) {
            VarInt::Value(v, n) => (v as usize, n),
            VarInt::Incomplete => return Ok(None),
            VarInt::Malformed => return Err(DecodeError::MalformedRemainingLength),
        };
        let header_len = 1 + n;
        let size = header_len + remaining;
        if size > self.max_packet_size as usize {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        if buf.len() < size {
            return Ok(None);
        }
        Ok(Some(FixedHeader {
            first,
            packet_type,
            header_len,
            remaining,
        }))
    }

    /// Decodes the packet at the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed: nothing is consumed and nothing is allocated. On
    /// `Ok(Some(packet))` the packet's bytes have been split off `buf` (zero-copy: the packet's
    /// strings and payload point into them). A CONNECT fixes the version of this decoder.
    ///
    /// # Errors
    /// A [`DecodeError`] for a malformed packet, one larger than the maximum packet size (found
    /// before its body is buffered), or a first packet that is not CONNECT while no version is
    /// set. The bytes of a malformed packet are consumed; the connection must be closed.
    #[inline]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(h) = self.check(buf)? else {
            return Ok(None);
        };
        buf.advance(h.header_len);
        let body = Reader::new(buf.split_to(h.remaining).freeze());
        // Before CONNECT `check` only lets a CONNECT through, and CONNECT reads its own version.
        let version = self.version.unwrap_or(ProtocolVersion::V5);
        let packet = Packet::decode_body(h.first, h.packet_type, body, version)?;
        if let Packet::Connect(c) = &packet {
            self.version = Some(c.protocol);
        }
        Ok(Some(packet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProtocolVersion::*;
    use crate::{Connect, Packet, Publish};

    #[test]
    fn too_large_from_fixed_header_alone() {
        // Remaining length 268,435,455 (256 MB) with a 1 MB maximum: refused after 5 bytes.
        let mut d = Decoder::new(1 << 20);
        d.set_version(V3_1_1);
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::PacketTooLarge {
                size: 268_435_460,
                max: 1 << 20
            })
        );
        // The same before CONNECT (a server's first read).
        let mut d = Decoder::new(1 << 20);
        let mut buf = BytesMut::from(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F][..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(DecodeError::PacketTooLarge { .. })
        ));
    }

    #[test]
    fn exactly_max_is_accepted() {
        let mut d = Decoder::new(9);
        d.set_version(V3_1_1);
        let mut buf = BytesMut::from(&[0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i'][..]);
        assert!(d.decode(&mut buf).unwrap().is_some());
        d.set_max_packet_size(8);
        let mut buf = BytesMut::from(&[0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i'][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::PacketTooLarge { size: 9, max: 8 })
        );
    }

    #[test]
    fn malformed_remaining_length() {
        let mut d = Decoder::new(u32::MAX);
        d.set_version(V5);
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::MalformedRemainingLength)
        );
    }

    #[test]
    fn reserved_type_and_first_packet() {
        let mut d = Decoder::new(1024);
        let mut buf = BytesMut::from(&[0x00, 0x00][..]);
        assert_eq!(d.decode(&mut buf), Err(DecodeError::ReservedPacketType(0)));
        let mut buf = BytesMut::from(&[0xC0, 0x00][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::FirstPacketNotConnect(PacketType::PingReq))
        );
    }

    #[test]
    fn incremental_and_connect_sets_version() {
        let mut wire = BytesMut::new();
        Packet::from(Connect::new(V5, "c"))
            .encode(V5, &mut wire)
            .unwrap();
        Packet::Publish(Publish::new("t", "p"))
            .encode(V5, &mut wire)
            .unwrap();
        Packet::PingReq.encode(V5, &mut wire).unwrap();
        let all = wire.clone();
        let mut d = Decoder::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in all.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(p) = d.decode(&mut buf).unwrap() {
                got.push(p);
            }
        }
        assert_eq!(d.version(), Some(V5));
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], Packet::PingReq);
        assert!(buf.is_empty());
    }

    #[test]
    fn ping_with_body_is_malformed() {
        let mut d = Decoder::new(1024);
        d.set_version(V3_1_1);
        let mut buf = BytesMut::from(&[0xD0, 1, 0][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::TrailingBytes(PacketType::PingResp))
        );
        let mut buf = BytesMut::from(&[0xC1, 0][..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(DecodeError::ReservedFlags { .. })
        ));
    }
}
