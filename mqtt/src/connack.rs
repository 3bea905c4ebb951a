//! CONNACK (section 3.2): the server's answer to CONNECT. Version 3 return codes 0 to 5 are
//! carried as their v5 [`ReasonCode`] equivalents and mapped back when encoding.

use bytes::BufMut;

use crate::codec::Reader;
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::properties::{Ctx, Properties};
use crate::reason::{self, ReasonCode};
use crate::types::ProtocolVersion;

/// CONNACK: the server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session.
    pub session_present: bool,
    /// Result; v3 return codes 1 to 5 map to `UnsupportedProtocolVersion`,
    /// `ClientIdentifierNotValid`, `ServerUnavailable`, `BadUserNameOrPassword`,
    /// `NotAuthorized`.
    pub code: ReasonCode,
    /// CONNACK properties (v5 only).
    pub properties: Properties,
}

impl ConnAck {
    /// A CONNACK with `code` and no properties.
    #[must_use]
    pub fn new(session_present: bool, code: ReasonCode) -> Self {
        Self {
            session_present,
            code,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        if flags & 0xFE != 0 {
            return Err(DecodeError::InvalidConnAckFlags);
        }
        let byte = r.u8()?;
        let (code, properties) = if version.is_v5() {
            let code = reason::decode_in(byte, PacketType::ConnAck)?;
            let properties = Properties::decode(&mut r, Ctx::Packet(PacketType::ConnAck))?;
            (code, properties)
        } else {
            (ReasonCode::from_v3_connack(byte)?, Properties::default())
        };
        if !r.is_empty() {
            return Err(DecodeError::TrailingBytes(PacketType::ConnAck));
        }
        Ok(Self {
            session_present: flags & 0x01 != 0,
            code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.encoded_len()
        } else {
            2
        }
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        out.put_u8(u8::from(self.session_present));
        if version.is_v5() {
            out.put_u8(reason::encode_in(self.code, PacketType::ConnAck)?);
            self.properties
                .encode(out, Ctx::Packet(PacketType::ConnAck))?;
        } else {
            out.put_u8(self.code.to_v3_connack());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Packet;
    use crate::ProtocolVersion::*;
    use crate::test_util::{decode, encode};

    #[test]
    fn v311_codes() {
        let codes = [
            ReasonCode::Success,
            ReasonCode::UnsupportedProtocolVersion,
            ReasonCode::ClientIdentifierNotValid,
            ReasonCode::ServerUnavailable,
            ReasonCode::BadUserNameOrPassword,
            ReasonCode::NotAuthorized,
        ];
        for (byte, code) in (0u8..).zip(codes) {
            let p: Packet = ConnAck::new(byte == 0, code).into();
            let bytes = [0x20, 2, u8::from(byte == 0), byte];
            assert_eq!(encode(&p, V3_1_1), bytes);
            assert_eq!(decode(&bytes, Some(V3_1_1)), Ok(p));
        }
        assert_eq!(
            decode(&[0x20, 2, 0, 6], Some(V3_1_1)),
            Err(DecodeError::InvalidReasonCode(6))
        );
    }

    #[test]
    fn v5_properties() {
        let mut c = ConnAck::new(false, ReasonCode::Success);
        c.properties.receive_maximum = Some(10);
        c.properties.maximum_qos = Some(crate::QoS::AtLeastOnce);
        c.properties.assigned_client_identifier = Some("id".into());
        let bytes = [
            0x20, 13, 0, 0, 10, 0x12, 0, 2, b'i', b'd', 0x21, 0, 10, 0x24, 1,
        ];
        assert_eq!(encode(&c.clone().into(), V5), bytes);
        assert_eq!(decode(&bytes, Some(V5)), Ok(c.into()));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode(&[0x20, 2, 2, 0], Some(V3_1_1)),
            Err(DecodeError::InvalidConnAckFlags)
        );
        assert_eq!(
            decode(&[0x20, 3, 0, 0, 0], Some(V3_1_1)),
            Err(DecodeError::TrailingBytes(PacketType::ConnAck))
        );
        // Receive Maximum 0 is a protocol error.
        assert_eq!(
            decode(&[0x20, 6, 0, 0, 3, 0x21, 0, 0], Some(V5)),
            Err(DecodeError::InvalidPropertyValue(0x21))
        );
        assert_eq!(
            decode(&[0x20, 7, 0, 0, 4, 0x24, 1, 0x24, 1], Some(V5)),
            Err(DecodeError::DuplicateProperty { id: 0x24 })
        );
        assert_eq!(
            decode(&[0x20, 5, 0, 0, 2, 0x25, 2], Some(V5)),
            Err(DecodeError::InvalidPropertyValue(0x25))
        );
        assert_eq!(
            decode(&[0x20, 5, 0, 0, 0x80, 0x80, 0x80], Some(V5)).map(|_| ()),
            Err(DecodeError::UnexpectedEnd)
        );
        assert_eq!(
            decode(&[0x20, 7, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x01], Some(V5)),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            decode(&[0x20, 3, 0, 0x10, 0], Some(V5)),
            Err(DecodeError::ReasonCodeNotAllowed {
                code: ReasonCode::NoMatchingSubscribers,
                packet_type: PacketType::ConnAck
            })
        );
    }
}
