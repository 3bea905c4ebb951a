//! AUTH (section 3.15, v5 only): extended authentication exchanges between CONNECT and CONNACK,
//! and re-authentication later.

use bytes::BufMut;

use crate::codec::Reader;
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::properties::{Ctx, Properties};
use crate::reason::{self, ReasonCode};

/// AUTH: one step of an extended authentication exchange.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// `Success`, `ContinueAuthentication` or `ReAuthenticate`.
    pub code: ReasonCode,
    /// Properties: authentication method and data, reason string, user properties.
    pub properties: Properties,
}

impl Auth {
    pub(crate) fn decode(mut r: Reader) -> Result<Self, DecodeError> {
        let mut a = Self::default();
        if !r.is_empty() {
            a.code = reason::decode_in(r.u8()?, PacketType::Auth)?;
        }
        if !r.is_empty() {
            a.properties = Properties::decode(&mut r, Ctx::Packet(PacketType::Auth))?;
        }
        if !r.is_empty() {
            return Err(DecodeError::TrailingBytes(PacketType::Auth));
        }
        Ok(a)
    }

    pub(crate) fn body_len(&self) -> usize {
        if self.code == ReasonCode::Success && self.properties.is_empty() {
            0
        } else {
            1 + self.properties.encoded_len()
        }
    }

    pub(crate) fn encode_body(&self, out: &mut impl BufMut) -> Result<(), EncodeError> {
        if self.code != ReasonCode::Success || !self.properties.is_empty() {
            out.put_u8(reason::encode_in(self.code, PacketType::Auth)?);
            self.properties.encode(out, Ctx::Packet(PacketType::Auth))?;
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
    fn forms() {
        let a: Packet = Auth::default().into();
        assert_eq!(encode(&a, V5), [0xF0, 0]);
        assert_eq!(decode(&[0xF0, 0], Some(V5)), Ok(a));
        let mut c = Auth {
            code: ReasonCode::ContinueAuthentication,
            properties: Properties::default(),
        };
        c.properties.authentication_method = Some("SCRAM".into());
        let bytes = [0xF0, 10, 0x18, 8, 0x15, 0, 5, b'S', b'C', b'R', b'A', b'M'];
        assert_eq!(encode(&c.clone().into(), V5), bytes);
        assert_eq!(decode(&bytes, Some(V5)), Ok(c.into()));
    }

    #[test]
    fn not_in_v3() {
        assert_eq!(
            decode(&[0xF0, 0], Some(V3_1_1)),
            Err(DecodeError::ReservedPacketType(15))
        );
        let mut out = bytes::BytesMut::new();
        assert!(matches!(
            Packet::Auth(Auth::default()).encode(V3_1_1, &mut out),
            Err(EncodeError::NotInVersion { .. })
        ));
    }
}
