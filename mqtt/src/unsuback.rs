//! UNSUBACK (section 3.11): the server's answer to UNSUBSCRIBE; in v5 with one reason code per
//! filter, in v3 just the packet identifier.

use bytes::BufMut;

use crate::codec::Reader;
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::properties::{Ctx, Properties};
use crate::reason::{self, ReasonCode};
use crate::types::{PacketId, ProtocolVersion};

/// UNSUBACK: the server's answer to UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Identifier of the UNSUBSCRIBE being answered.
    pub pid: PacketId,
    /// One code per filter (v5); always empty in v3.
    pub codes: Vec<ReasonCode>,
    /// UNSUBACK properties (v5 only).
    pub properties: Properties,
}

impl UnsubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let pid = r.pid()?;
        let mut codes = Vec::new();
        let mut properties = Properties::default();
        if version.is_v5() {
            properties = Properties::decode(&mut r, Ctx::Packet(PacketType::UnsubAck))?;
            codes.reserve(r.remaining());
            while !r.is_empty() {
                codes.push(reason::decode_in(r.u8()?, PacketType::UnsubAck)?);
            }
        } else if !r.is_empty() {
            return Err(DecodeError::TrailingBytes(PacketType::UnsubAck));
        }
        Ok(Self {
            pid,
            codes,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.encoded_len() + self.codes.len()
        } else {
            2
        }
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        out.put_u16(self.pid.get());
        if version.is_v5() {
            self.properties
                .encode(out, Ctx::Packet(PacketType::UnsubAck))?;
            for &c in &self.codes {
                out.put_u8(reason::encode_in(c, PacketType::UnsubAck)?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Packet;
    use crate::ProtocolVersion::*;
    use crate::test_util::{decode, encode, pid};

    #[test]
    fn v311_and_v5() {
        let u = UnsubAck {
            pid: pid(3),
            codes: vec![],
            properties: Properties::default(),
        };
        assert_eq!(encode(&u.clone().into(), V3_1_1), [0xB0, 2, 0, 3]);
        assert_eq!(decode(&[0xB0, 2, 0, 3], Some(V3_1_1)), Ok(Packet::from(u)));
        let u5 = UnsubAck {
            pid: pid(3),
            codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
            properties: Properties::default(),
        };
        let bytes = [0xB0, 5, 0, 3, 0, 0x00, 0x11];
        assert_eq!(encode(&u5.clone().into(), V5), bytes);
        assert_eq!(decode(&bytes, Some(V5)), Ok(Packet::from(u5)));
        assert_eq!(
            decode(&[0xB0, 3, 0, 3, 0], Some(V3_1_1)),
            Err(DecodeError::TrailingBytes(PacketType::UnsubAck))
        );
    }
}
